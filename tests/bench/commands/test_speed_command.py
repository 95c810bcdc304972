"""``bench speed`` through ``main``: the command a user types runs and writes its table (a moved
module it imports lazily fails here, not in a user's terminal)."""

from __future__ import annotations

import pandas as pd

from bench.__main__ import main


def test_bench_speed_runs_on_the_cpu_and_writes_its_tables(tmp_path, capsys):
    out = tmp_path / "speed"
    assert main(["speed", "--devices", "cpu", "--models", "gmf", "--batch-sizes", "256", "--modes", "single",
                 "--out", str(out)]) == 0
    frame = pd.read_csv(out / "speed.csv")
    assert set(frame["model"]) == {"gmf"} and set(frame["device"]) == {"cpu"}
    assert set(frame["engine"]) == {"dense", "sparse"}
    assert (frame["engine_samples_per_s"] > 0).all() and (frame["reference_samples_per_s"] > 0).all()
    assert "gmf" in (out / "speed.md").read_text()

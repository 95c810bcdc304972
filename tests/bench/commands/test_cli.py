"""The commands as a user types them: one-line errors without a traceback, help and listings that
say what is valid, and bench speed's table."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench.__main__ import main
from tests.conftest import ROOT, TINY


def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys):
    bad = tmp_path / "p"
    (tmp_path / "p.train.rating").write_text("0\t0\t5\t1\n1\t1\t4\t2\n")
    (tmp_path / "p.test.rating").write_text("9\t1\t5\t3\n")
    (tmp_path / "p.test.negative").write_text("(9,1)\t0\n")
    out = tmp_path / "out"
    code = main(["run", "--suite", "smoke", "--datasets", str(bad), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "p.test.rating: unknown user id 9" in err[-1]
    assert not (out / "trials.jsonl").exists()


def test_cli_subprocess_has_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "bench", "run", "--suite", "smoke", "--datasets",
                          "anime", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and res.stderr.strip().startswith("error: ")


def test_params_file_with_unknown_field_is_rejected(tmp_path, capsys):
    params = tmp_path / "best_params.json"
    params.write_text(json.dumps({"variants": {"gmf": {"train": {"learning_rate": 0.1}}}}))
    assert main(["run", *TINY, "--params", str(params), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "best_params.json: variant 'gmf': unknown TrainConfig fields: ['learning_rate']" in err


def test_bench_speed_table(tmp_path):
    from bench.commands.speed import measure, speed_markdown

    frame = measure(("cpu",), (512,), ("gmf",), log=lambda _: None,
                    shape={"n_users": 200, "n_items": 120, "per_user": 10})
    assert list(frame.columns[:7]) == ["model", "device", "batch_size", "mode", "engine",
                                       "reference_samples_per_s", "engine_samples_per_s"]
    assert set(zip(frame["mode"], frame["engine"])) == {(m, e) for m in ("single", "stacked10")
                                                         for e in ("dense", "sparse")}
    assert (frame["engine_samples_per_s"] > 0).all()
    np.testing.assert_allclose(frame["speedup"], frame["engine_samples_per_s"] / frame["reference_samples_per_s"])
    stacked = frame[frame["mode"] == "stacked10"]
    np.testing.assert_allclose(stacked["engine_steps_per_s"], stacked["engine_samples_per_s"] / 512 / 10)
    assert "stacked10" in speed_markdown(frame, "test machine")


def test_large_batch_measurement_runs(monkeypatch):
    from bench.commands import speed
    from ncf_core import ModelConfig

    monkeypatch.setattr(speed, "LARGE", {"n_users": 50, "n_items": 40, "batch_size": 64})
    monkeypatch.setattr(speed, "LARGE_MODEL", ModelConfig(n_factors=4, mlp_layers=(8, 4)))
    frame = speed.measure_large(("cpu",), log=lambda _: None)
    assert list(frame["engine"]) == ["dense"] and (frame["engine_samples_per_s"] > 0).all()
    assert frame["reference_samples_per_s"].isna().all()


def test_bench_speed_warns_when_the_reference_drifts():
    from bench.commands.speed import speed_markdown

    frame = pd.DataFrame([{"model": "mf", "device": "cpu", "batch_size": 256, "mode": "single", "engine": "dense",
                           "reference_samples_per_s": 26071.5, "engine_samples_per_s": 3e5, "speedup": 11.5,
                           "engine_steps_per_s": 1000.0, "reference_before": 48573.0, "reference_after": 3570.0,
                           "reference_stable": False}])
    text = speed_markdown(frame, "test")
    assert "**Warning:**" in text and "mf cpu batch 256" in text and "48,573" in text and "3,570" in text


@pytest.mark.parametrize("command", [["run"], ["report"], ["list"], ["tune"], ["speed"], ["data", "fetch"],
                                     ["benchtable"]])
def test_help_shows_a_default_only_where_it_says_something(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "usage:" in text and "(default: None)" not in text and "(default: False)" not in text


def test_a_mistyped_data_set_name_is_told_the_names(capsys):
    assert main(["run", "--datasets", "ml100k", "--plan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("(did you mean 'ml-100k'? registered: anime, ml-100k, ml-1m, ml-20m, ml-25m, ncf-ml-1m, "
                        "ncf-pinterest-20, synthetic)") and "\n" not in err


def test_list_names_every_suite_variant_and_data_set_under_headed_columns(capsys):
    from bench.suites import SUITES
    from bench.variants import VARIANTS
    from ncf_core.data import DATASETS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[1]
    assert header.split() == ["name", "data", "sets", "seeds", "devices", "what", "it", "runs"]
    words = set(out.split())
    assert set(SUITES) | set(VARIANTS) | set(DATASETS) <= words


def test_a_data_dir_one_folder_too_deep_is_one_line_not_a_stand_in_run(tmp_path, capsys):
    deep = tmp_path / "data" / "ml-100k"
    deep.mkdir(parents=True)
    (deep / "u.data").write_text("1\t1\t5\t0\n")
    out = tmp_path / "run"
    assert main(["run", "--suite", "quick", "--data-dir", str(deep), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {deep}: holds u.data itself: --data-dir is the folder that "
                                               f"holds ml-100k/ (give {deep.parent})")
    assert not out.exists()


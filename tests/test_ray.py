"""bench run on Ray: the same trials as a plain run, bit for bit on the CPU, and resume after the
driver is SIGKILLed. Skipped where Ray is not installed (pip install -e '.[ray]'; .ci/run does)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.run.store import TrialStore, trial_key

pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
ROOT = Path(__file__).resolve().parents[1]
ARGS = ["run", "--suite", "smoke", "--variants", "mf,gmf,mlp,neumf-pre-adam", "--seeds", "2", "--epochs", "2"]
METRICS = ["mae", "rmse", "r2", "hr@10", "ndcg@10", "full_ndcg@10", "full_hr@10", "full_recall@10"]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *ARGS, *extra, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def _table(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "report" / "trials.csv")
    return frame.set_index(["task", "variant", "seed"]).sort_index()[METRICS + ["status", "best_epoch"]]


def test_a_ray_run_writes_the_same_trials_as_a_plain_run(tmp_path):
    plain, on_ray = _run(tmp_path / "plain"), _run(tmp_path / "ray", "--ray")
    assert plain.returncode == 0, plain.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    pd.testing.assert_frame_equal(_table(tmp_path / "ray"), _table(tmp_path / "plain"), check_exact=True)


def test_a_killed_ray_driver_resumes_with_no_trial_lost_or_repeated(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bench", *ARGS, "--ray", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    store = TrialStore(out)
    deadline = time.time() + 300
    while time.time() < deadline and len(store.records()) < 4:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(store.records())
    assert 4 <= killed_at < 22, "the kill should land mid-run"
    subprocess.run(["ray", "stop", "--force"], capture_output=True)  # what the killed driver left running
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in store.path.read_text().splitlines() if x.strip()]
    keys = [trial_key(r) for r in lines if r["status"] == "ok"]
    assert len(keys) == len(set(keys)) == 22  # (4 variants x 2 tasks + 3 baselines) x 2 seeds

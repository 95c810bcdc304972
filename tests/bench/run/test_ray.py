"""bench run on Ray: the same trials as a plain run, bit for bit on the CPU, resume after the
driver is SIGKILLed, and a task's epochs reaching the driver while it runs. Skipped where Ray is
not installed (pip install -e '.[ray]'; .ci/run does)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from bench.run.pool import Job
from bench.run.store import TrialStore, trial_key
from tests.conftest import ROOT, stop_processes_naming

pytestmark = pytest.mark.slow  # subprocess runs, kills and servers: minutes in all

pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
ARGS = ["run", "--suite", "smoke", "--variants", "mf,gmf,mlp,neumf-pre-adam", "--seeds", "2", "--epochs", "2"]
METRICS = ["mae", "rmse", "r2", "hr@10", "ndcg@10", "full_ndcg@10", "full_hr@10", "full_recall@10"]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *ARGS, *extra, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def _table(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "report" / "trials.csv")
    return frame.set_index(["task", "variant", "seed"]).sort_index()[METRICS + ["status", "best_epoch"]]


def test_a_killed_ray_run_resumes_to_the_trials_of_a_plain_run(tmp_path):
    """On Ray, the driver dies right after its fourth stored trial (a fault point, not a race); the
    same command then finishes the run with no trial lost or repeated, and every trial equals a plain
    run's, bit for bit on the CPU. The local Ray it started lives in a private temporary folder: only
    those processes are stopped, never a Ray that someone else runs on this machine."""
    plain = _run(tmp_path / "plain", "--jobs", "1")  # every job on every core, as every Ray task
    assert plain.returncode == 0, plain.stderr
    out = tmp_path / "run"
    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    cmd = [sys.executable, "-m", "bench", *ARGS, "--ray", "--out", str(out)]
    try:
        killed = subprocess.run(cmd, cwd=ROOT, capture_output=True, env={**env, "BENCH_KILL_AT": "stored:4"},
                                timeout=600)
        assert killed.returncode == -signal.SIGKILL
        stop_processes_naming(ray_tmp)
        assert len(TrialStore(out).records()) == 4
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stderr
    finally:
        stop_processes_naming(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    lines = [json.loads(x) for x in TrialStore(out).path.read_text().splitlines() if x.strip()]
    keys = [trial_key(r) for r in lines if r["status"] == "ok"]
    assert len(keys) == len(set(keys)) == 22  # (4 variants x 2 tasks + 3 baselines) x 2 seeds
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "plain"), check_exact=True)


def test_a_ray_tasks_epochs_reach_the_driver_before_it_ends():
    """The progress bar of a Ray run moves while a long study runs, not only when it ends."""
    import ray
    from test_pool import _three_epochs

    from bench.run.executors import RayExecutor

    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))
    paths = os.pathsep.join([str(Path(__file__).parent), str(ROOT)])  # the job's module, for Ray's workers
    ray.init(include_dashboard=False, log_to_driver=False, _temp_dir=str(ray_tmp),
             runtime_env={"env_vars": {"PYTHONPATH": paths}})
    events = []
    try:
        jobs = [Job("a", _three_epochs, (1,)), Job("b", _three_epochs, (2,)),
                Job("c", _three_epochs, (3,), after=("a",))]
        for job, result in RayExecutor(None, 1).execute(jobs, [], epoch=lambda key, n: events.extend([key] * n)):
            assert result == "abc".index(job.key) + 1
            events.append(f"{job.key} done")
    finally:
        ray.shutdown()
        stop_processes_naming(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    for key in "abc":
        assert [e for e in events if e.startswith(key)] == [key] * 3 + [f"{key} done"], events

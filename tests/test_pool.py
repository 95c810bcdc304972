"""The local worker pool (bench run --jobs): dependencies, errors, same numbers, no orphans."""

from __future__ import annotations

import contextlib
import json
import operator
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.params import TunedParams
from bench.pool import Task, run_tasks
from bench.store import TrialStore, trial_key
from ncf_core import DataError

ROOT = Path(__file__).resolve().parents[1]


def _chain() -> list[Task]:
    return [
        Task("a", operator.mul, lambda r: (6, 7)),
        Task("b", operator.add, lambda r: (1, 2)),
        Task("c", operator.sub, lambda r: (r["a"], r["b"]), after=("a", "b")),
        Task("d", operator.mul, lambda r: (r["c"], 2), after=("c",)),
    ]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_task_runs_after_its_dependencies_with_their_results(jobs):
    finished = [t.key for t, _ in run_tasks(_chain(), jobs, 1)]
    results = dict(zip(finished, [r for _, r in run_tasks(_chain(), jobs, 1)]))
    assert results == {"a": 42, "b": 3, "c": 39, "d": 78}
    assert finished.index("c") > max(finished.index("a"), finished.index("b"))
    assert finished.index("d") > finished.index("c")


def test_a_workers_error_reaches_the_driver_whole(tmp_path):
    missing = tmp_path / "none.json"
    tasks = [Task("x", TunedParams.load, lambda r: ([missing],))]
    with pytest.raises(DataError) as err:
        list(run_tasks(tasks, 2, 1))
    assert err.value.path == str(missing) and err.value.problem.startswith("file not found")
    copy = pickle.loads(pickle.dumps(DataError("f.csv", "bad  row\n3")))
    assert (copy.path, copy.problem, str(copy)) == ("f.csv", "bad row 3", "f.csv: bad row 3")


def test_tasks_that_wait_on_each_other_are_refused():
    loop = [Task("a", operator.add, lambda r: (r["b"], 1), after=("b",)),
            Task("b", operator.add, lambda r: (r["a"], 1), after=("a",))]
    with pytest.raises(ValueError, match="wait on each other"):
        list(run_tasks(loop, 2, 1))
    with pytest.raises(ValueError, match="unlisted"):
        list(run_tasks([Task("a", operator.add, lambda r: (1, 1), after=("zz",))], 2, 1))


ARGS = ["run", "--suite", "smoke", "--tune", "2", "--seeds", "2", "--epochs", "2"]


def test_jobs_change_nothing_but_the_wall_clock(tmp_path):
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}"
        assert main([*ARGS, "--jobs", str(jobs), "--out", str(out)]) == 0
        runs[jobs] = ({trial_key(r): r["metrics"] for r in TrialStore(out).records()},
                      json.loads((out / "manifest.json").read_text()))
    (one, m1), (two, m2) = runs[1], runs[2]
    assert len(one) == 2 * 2 * 6 + 2 * 3 and one == two  # 2 tasks x 2 seeds x 6 variants + 3 baselines a seed
    s1, s2 = m1["tuning"]["studies"], m2["tuning"]["studies"]
    assert list(s1) == list(s2) and all(s1[k]["best"] == s2[k]["best"] for k in s1)
    assert (m1["runs"][-1]["jobs"], m2["runs"][-1]["jobs"]) == (1, 2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_driver_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    # two studies of ~10 s each: a worker without PR_SET_PDEATHSIG would outlive the driver by seconds
    cmd = [sys.executable, "-m", "bench", "run", "--suite", "smoke", "--datasets", "synthetic", "--variants",
           "gmf,mlp", "--tune", "16", "--epochs", "30", "--seeds", "2", "--jobs", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def children() -> set[int]:
        kids: set[int] = set()
        for task in Path(f"/proc/{proc.pid}/task").glob("*"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                kids |= {int(p) for p in (task / "children").read_text().split()}
        return kids

    deadline = time.time() + 120
    while time.time() < deadline and len(children()) < 2:
        time.sleep(0.05)
    time.sleep(3.0)  # the workers have imported torch and are busy with the studies
    workers = children()
    assert len(workers) >= 2 and proc.poll() is None, "the kill should land while workers run"
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must follow by themselves
    proc.wait()

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
        except (OSError, IndexError):
            return False

    deadline = time.time() + 2
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(alive(p) for p in workers)
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode == 0
    keys = [trial_key(r) for r in TrialStore(out).records() if r["status"] == "ok"]
    assert len(keys) == len(set(keys)) == 8  # 2 variants x 2 seeds + 2 baselines x 2 seeds

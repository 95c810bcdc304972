"""The local worker pool (bench run --jobs): dependencies, errors, same numbers, no orphans, a dead
worker an error at once. Kills are injected at chosen points (bench.faults), not raced against a clock."""

from __future__ import annotations

import contextlib
import json
import operator
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.params import TunedParams
from bench.run.pool import Job, run_jobs
from bench.run.store import TrialStore, trial_key
from ncf_core import DataError
from tests.conftest import ROOT


def _chain() -> list[Job]:
    return [
        Job("a", operator.mul, (6, 7)),
        Job("b", operator.add, (1, 2)),
        Job("c", operator.sub, (), after=("a", "b")),
        Job("d", operator.mul, (2,), after=("c",)),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_job_runs_after_its_dependencies_with_their_results(workers):
    finished = [(job.key, result) for job, result in run_jobs(_chain(), workers, 2, [])]
    order = [k for k, _ in finished]
    assert dict(finished) == {"a": 42, "b": 3, "c": 39, "d": 78}
    assert order.index("c") > max(order.index("a"), order.index("b")) and order.index("d") > order.index("c")


def _three_epochs(x, *after):
    from bench.compute import progress
    from bench.run.pool import REPORT_S

    for _ in range(3):
        progress.epoch()
        time.sleep(REPORT_S / 2)  # a worker sends what has ended at most twice a report period
    return x


@pytest.mark.parametrize("workers", [1, 2])
def test_a_running_jobs_epochs_reach_the_driver_before_it_ends(workers):
    """The progress bar moves while a long study runs, not only when it ends."""
    events = []
    jobs = [Job("a", _three_epochs, (1,)), Job("b", _three_epochs, (2,)), Job("c", _three_epochs, (3,), after=("a",))]
    results = {}
    for job, result in run_jobs(jobs, workers, 2, [], epoch=lambda key, n: events.extend([("epoch", key)] * n)):
        events.append(("done", job.key))
        results[job.key] = result
    assert results == {"a": 1, "b": 2, "c": 3}
    for key in "abc":
        mine = [kind for kind, k in events if k == key]
        assert mine == ["epoch"] * 3 + ["done"], (key, events)


def test_a_workers_error_reaches_the_driver_whole(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(DataError) as err:
        list(run_jobs([Job("x", TunedParams.load, ([missing],)), Job("y", operator.add, (1, 1))], 2, 2, []))
    assert err.value.path == str(missing) and err.value.problem.startswith("file not found")
    copy = pickle.loads(pickle.dumps(DataError("f.csv", "bad  row\n3")))
    assert (copy.path, copy.problem, str(copy)) == ("f.csv", "bad row 3", "f.csv: bad row 3")


def test_jobs_that_wait_on_each_other_are_refused():
    loop = [Job("a", operator.add, (1,), after=("b",)), Job("b", operator.add, (1,), after=("a",))]
    with pytest.raises(ValueError, match="wait on each other"):
        list(run_jobs(loop, 2, 2, []))
    with pytest.raises(ValueError, match="unlisted"):
        list(run_jobs([Job("a", operator.add, (1, 1), after=("zz",))], 2, 2, []))


def _threads_seen(epochs: int, *after):
    """A job that ends epochs until it runs on two threads (or ``epochs`` of them): the threads it
    started on, then those it ran each epoch on."""
    import torch

    from bench.compute import progress

    seen = [torch.get_num_threads()]
    for _ in range(epochs):
        progress.epoch()
        seen.append(torch.get_num_threads())
        if seen[-1] == 2:
            break
        time.sleep(0.05)
    return seen


def _now(x):
    return x


def test_every_job_trains_on_its_share_of_the_cores_whatever_runs_beside_it():
    """A job's thread count fixes its numbers (an MLP's weights differ between one thread and two),
    so it must not follow timing: the job left alone when the other ends, and the one that starts
    alone after both, keep the threads every job is given."""
    jobs = [Job("long", _threads_seen, (20,)), Job("short", _now, (1,)),
            Job("last", _threads_seen, (3,), after=("long", "short"))]
    said = []
    seen = {job.key: result for job, result in run_jobs(jobs, 2, 1, [],
                                                        started=lambda job, threads: said.append(threads))}
    assert seen["long"] == [1] * 21 and seen["last"] == [1] * 4
    assert said == [1, 1, 1]  # what the progress bar says a job runs on


FOUR = ["--variants", "mf,gmf,mlp,neumf-pre-sgd"]  # a pretrained NeuMF, so jobs wait on others
ARGS = ["run", "--suite", "smoke", "--tune", "2", "--seeds", "2", "--epochs", "2", *FOUR]


def test_jobs_change_nothing_but_the_wall_clock(tmp_path, monkeypatch):
    """Two workers, and by default none (work this small does not repay their start: the jobs run in
    this process on the threads a worker would have had): the same trials and studies, bit for bit."""
    monkeypatch.setattr("bench.run.runner.cpu_cores", lambda: 2)  # one thread a job, whatever the machine
    runs = {}
    for jobs in ([], ["--jobs", "2"]):
        out = tmp_path / f"j{len(jobs)}"
        assert main([*ARGS, *jobs, "--out", str(out)]) == 0
        runs[len(jobs)] = ({trial_key(r): (r["metrics"], r.get("threads")) for r in TrialStore(out).records()},
                           json.loads((out / "manifest.json").read_text()))
    (one, m1), (two, m2) = runs[0], runs[2]
    assert len(one) == 2 * 2 * 4 + 2 * 3  # 2 tasks x 2 seeds x 4 variants + 3 baselines a seed
    assert one == two
    s1, s2 = m1["tuning"]["studies"], m2["tuning"]["studies"]
    assert sorted(s1) == sorted(s2) and all(s1[k]["best"] == s2[k]["best"] for k in s1)
    assert [(m["runs"][-1]["jobs"], m["runs"][-1]["threads_per_job"]) for m in (m1, m2)] == [(1, 1), (2, 1)]


SMOKE = [sys.executable, "-m", "bench", "run", "--suite", "smoke", "--seeds", "2", "--epochs", "3", "--jobs", "2",
         *FOUR]


def test_a_killed_worker_ends_the_run_with_a_one_line_error_and_the_rerun_completes(tmp_path):
    """Before, the driver waited forever on a dead worker's result."""
    out = tmp_path / "run"
    env = {**os.environ, "BENCH_KILL_AT": "unit-epoch:4"}  # a worker dies in its fourth epoch
    res = subprocess.run([*SMOKE, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert err[-1].startswith("error: ") and "its worker process died" in err[-1] and "seeds [" in err[-1]
    stored = len(TrialStore(out).records())
    res = subprocess.run([*SMOKE, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in TrialStore(out).path.read_text().splitlines()]
    keys = [trial_key(r) for r in lines]
    assert len(keys) == len(set(keys)) == 2 * 2 * 4 + 2 * 3 and stored < len(keys)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_driver_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "BENCH_KILL_AT": "stored:3"}  # the driver dies after storing its third trial
    proc = subprocess.Popen([*SMOKE, "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    workers: set[int] = set()
    while proc.poll() is None:  # watch the driver's children until it dies: those are its workers
        for task in Path(f"/proc/{proc.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                workers |= {int(p) for p in (task / "children").read_text().split()}
        time.sleep(0.01)
    assert proc.returncode == -9 and len(workers) >= 2

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
        except (OSError, IndexError):
            return False

    deadline = time.time() + 30
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.05)
    assert not any(alive(p) for p in workers)
    assert len(TrialStore(out).records()) == 3
    assert subprocess.run([*SMOKE, "--out", str(out)], cwd=ROOT, capture_output=True).returncode == 0
    keys = [trial_key(r) for r in TrialStore(out).records() if r["status"] == "ok"]
    assert len(keys) == len(set(keys)) == 2 * 2 * 4 + 2 * 3


def test_a_finished_run_lets_its_workers_exit_so_nothing_warns_of_leaked_semaphores(tmp_path):
    """iALS's progress bar gives a worker a semaphore; killing idle workers at the end left the
    resource tracker to print a leak warning under every finished --jobs run."""
    res = subprocess.run([sys.executable, "-m", "bench", "run", "--suite", "smoke", "--variants", "ials",
                          "--seeds", "2", "--epochs", "1", "--jobs", "2", "--out", str(tmp_path / "run")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "leaked semaphore" not in res.stderr

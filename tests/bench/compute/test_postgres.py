"""Optuna studies on a real PostgreSQL server, started here on loopback (never mocked).

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` system user.
Skipped, with the reason, where the server binaries or the driver are missing (.ci/run installs both).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.conftest import ROOT, stale_trial_failed

pytestmark = pytest.mark.slow  # subprocess runs, kills and servers: minutes in all


def _tune(url: str, study: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench", "tune", "--dataset", "synthetic", "--variant", "gmf", "--storage", url,
            "--study", study, "--out", str(out), *extra]


def test_three_workers_share_one_postgres_study(postgres_url, tmp_path):
    """The README's recipe, three workers at once: unique trial numbers and every trial counted."""
    workers = [subprocess.Popen(_tune(postgres_url, "shared", tmp_path / f"w{i}", "--trials", "3", "--epochs", "2",
                                      "--sampler-seed", str(i)), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT) for i in range(3)]
    outputs = [w.communicate(timeout=600)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    trials = optuna.load_study(study_name="shared", storage=postgres_url).trials
    assert sorted(t.number for t in trials) == list(range(9))
    assert all(t.state.is_finished() for t in trials)


def test_workers_flag_starts_local_workers_on_one_study(postgres_url, tmp_path):
    res = subprocess.run(_tune(postgres_url, "flag", tmp_path / "o", "--trials", "2", "--epochs", "1",
                               "--workers", "3"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    trials = optuna.load_study(study_name="flag", storage=postgres_url).trials
    assert sorted(t.number for t in trials) == list(range(6))
    assert (tmp_path / "o" / "best_params.json").is_file()


def test_a_killed_worker_on_postgres_is_failed_and_retried(postgres_url, tmp_path):
    """A worker killed in its second epoch (a fault point, not a race) leaves its trial running; once its
    heartbeat is stale the next worker marks it failed and runs its parameters again."""
    env = {**os.environ, "BENCH_KILL_AT": "study-epoch:2"}
    victim = subprocess.run(_tune(postgres_url, "kill", tmp_path / "v", "--trials", "1", "--epochs", "5",
                                  "--heartbeat", "1", "--grace", "1"), cwd=ROOT, capture_output=True, env=env,
                            timeout=300)
    assert victim.returncode == -signal.SIGKILL
    running = stale_trial_failed("kill", postgres_url)
    res = subprocess.run(_tune(postgres_url, "kill", tmp_path / "n", "--trials", "1", "--epochs", "1",
                               "--heartbeat", "1", "--grace", "1"), cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    trials = optuna.load_study(study_name="kill", storage=postgres_url).trials
    killed = trials[running.number]
    assert killed.state == optuna.trial.TrialState.FAIL
    assert any(t.system_attrs.get("failed_trial") == killed.number and t.state.is_finished() for t in trials)

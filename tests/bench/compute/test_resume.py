"""A tuned run killed (SIGKILL) or interrupted (Ctrl-C) at any point, then started again with the
same command, ends with the studies, best settings and trials of an uninterrupted run. Kills are
injected at chosen points (bench.faults)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from bench.run.store import TrialStore, trial_key
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # subprocess runs, kills and servers: minutes in all

RUN = [sys.executable, "-m", "bench", "run", "--suite", "smoke", "--datasets", "synthetic", "--variants",
       "gmf,mlp,neumf-pre-sgd", "--tune", "4", "--tune-stack", "3", "--seeds", "2", "--epochs", "3",
       "--jobs", "1", "--pruner", "halving"]


def _run(out: Path, kill: str | None = None, *flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BENCH_KILL_AT"}
    if kill:
        env["BENCH_KILL_AT"] = kill
    return subprocess.run([*RUN, *flags, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=900, preexec_fn=_ctrl_c_as_a_terminal_delivers_it)


def _ctrl_c_as_a_terminal_delivers_it() -> None:
    """A background job of a shell without job control starts with SIGINT ignored (POSIX), and Python
    keeps an ignored SIGINT ignored: the run would never see the injected Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _state(out: Path) -> tuple[dict, dict, dict]:
    db = f"sqlite:///{out / 'tuning' / 'studies.db'}"
    studies = {s.study_name: [(t.number, t.state.name, t.value, t.params, dict(t.intermediate_values))
                              for t in optuna.load_study(study_name=s.study_name, storage=db).trials]
               for s in optuna.get_all_study_summaries(db)}
    best = {k: v["best"] for k, v in json.loads((out / "manifest.json").read_text())["tuning"]["studies"].items()}
    trials = {trial_key(r): r["metrics"] for r in TrialStore(out).records()}
    return studies, best, trials


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, dict, dict]:
    out = tmp_path_factory.mktemp("whole") / "run"
    res = _run(out)
    assert res.returncode == 0, res.stderr
    return _state(out)


# Uninterrupted, the studies report epochs 1-8 (MLP), 9-16 (GMF) and 17-24 (the pretrained NeuMF,
# its second stack at 24): a Ctrl-C inside the last study's second stack (two studies done), and a
# SIGKILL in the seeded phase. A SIGKILL inside the first study's first stack is the twice-killed
# test's first kill (study-epoch:5); the other two moments were dropped for CI time (~30 s).
@pytest.mark.parametrize("kill", ["study-epoch:24:int", "stored:3"])
def test_a_killed_tuned_run_resumes_to_the_uninterrupted_result(kill, uninterrupted, tmp_path):
    out = tmp_path / "run"
    first = _run(out, kill)
    assert first.returncode in (-9, 130), first.stderr  # SIGKILL, or Ctrl-C's exit
    if kill.endswith(":int"):
        assert "interrupted" in first.stderr.strip().splitlines()[-1] and "Traceback" not in first.stderr
    again = _run(out)
    assert again.returncode == 0, again.stderr
    studies, best, trials = _state(out)
    assert (studies, best, trials) == uninterrupted
    assert all(len([t for t in ts if t[1] in ("COMPLETE", "PRUNED")]) == 4 for ts in studies.values())


def test_a_run_killed_twice_between_ask_and_draw_resumes_to_the_uninterrupted_result(uninterrupted, tmp_path):
    """Killed after the NeuMF study asked its second trial and before it drew anything, then again
    at once in the resume: the open trial draws its settings from its own (seed, n) sampler, not
    whatever sampler the study held (before: another alpha, and a study that went elsewhere)."""
    out = tmp_path / "run"
    for kill in ("asked:10", "asked:2"):
        assert _run(out, kill).returncode == -9
    again = _run(out)
    assert again.returncode == 0, again.stderr
    assert _state(out) == uninterrupted


def test_a_run_resumed_under_another_protocol_is_refused_before_it_writes(tmp_path):
    """Threads change an MLP's numbers, the stack and pruner change the search: a killed run resumed
    with others would end as a mix of two runs."""
    out = tmp_path / "run"
    first = _run(out, "study-epoch:5", "--threads", "1")
    assert first.returncode == -9, first.stderr
    db = f"sqlite:///{out / 'tuning' / 'studies.db'}"

    def stored() -> tuple:
        return (tuple((t.number, t.state.name, dict(t.intermediate_values)) for s in optuna.get_all_study_summaries(db)
                      for t in optuna.load_study(study_name=s.study_name, storage=db).trials),
                (out / "trials.jsonl").is_file())

    before = stored()
    assert before[0] and not before[1]
    for flags, said in ((["--threads", "2"], "threads = 1 (this run: 2)"),
                        (["--threads", "1", "--tune-stack", "2"], "stack = 3 (this run: 2)")):
        again = _run(out, None, *flags)
        lines = again.stderr.strip().splitlines()
        assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr
        assert "studies.db" in lines[-1] and "mlp study on synthetic" in lines[-1] and said in lines[-1], lines[-1]
        assert stored() == before
    assert _run(out, "stored:1", "--threads", "1").returncode == -9  # into the seeded phase
    records = (out / "trials.jsonl").read_bytes()
    again = _run(out, None, "--threads", "2")
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr
    assert "trials.jsonl" in again.stderr and "trained on 1 thread (this run: 2)" in again.stderr
    assert (out / "trials.jsonl").read_bytes() == records


def test_every_study_has_the_budget_whatever_the_stack(tmp_path):
    from bench.__main__ import main

    for stack in ("1", "3"):
        out = tmp_path / stack
        assert main(["run", "--suite", "smoke", "--datasets", "synthetic", "--variants", "mf,gmf,mlp,neumf-pre-adam",
                     "--tune", "4", "--tune-stack", stack, "--seeds", "1", "--epochs", "2", "--out", str(out)]) == 0
        tuning = json.loads((out / "manifest.json").read_text())["tuning"]
        assert tuning["stack"] == {"synthetic": int(stack)}
        for info in tuning["studies"].values():
            assert info["trials"] == 4 == sum(info["states"].values()) and info["stack"] == int(stack)
        db = f"sqlite:///{out / 'tuning' / 'studies.db'}"
        assert {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(db)} == {
            f"synthetic-rating-{v}": 4 for v in ("mf", "gmf", "mlp", "neumf-pre-adam")}
        if stack == "3":  # halving judges a stack's members as the one-at-a-time search would: in
            # the order they were asked, each against those before it (a first trial always goes on)
            for summary in optuna.get_all_study_summaries(db):
                study = optuna.load_study(study_name=summary.study_name, storage=db)
                sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
                first = [sign * t.intermediate_values[1] for t in study.trials[:3]]
                went_on = [len(t.intermediate_values) > 1 for t in study.trials[:3]]
                assert went_on == [v >= max(first[:n + 1]) for n, v in enumerate(first)]


def test_plan_trains_nothing_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run([*RUN, "--plan", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert not out.exists()
    assert "study gmf" in res.stdout and "unit  neumf-pre-sgd" in res.stdout and "min wall time" in res.stdout


def test_ctrl_c_prints_the_command_that_resumes_it_and_that_command_finishes_the_run(tmp_path, monkeypatch, capsys):
    """Without --out the folder is a new timestamp: the line names it, so the rerun resumes, not restarts."""
    import shlex

    from bench import faults
    from bench.__main__ import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(faults, "_seen", {})
    monkeypatch.setenv(faults.ENV, "stored:3:int")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job ignores SIGINT
    try:
        argv = ["run", "--suite", "smoke", "--variants", "mf", "--seeds", "2", "--epochs", "1"]
        assert main(argv) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    folder = next(tmp_path.glob("results/smoke-*"))
    assert line == (f"interrupted: 3 trials are stored in {folder.relative_to(tmp_path)}; resume with: "
                    f"python -m bench {shlex.join(argv)} --out {folder.relative_to(tmp_path)}")
    monkeypatch.delenv(faults.ENV)
    again = shlex.split(line.split("resume with: python -m bench ")[1])
    assert main(again) == 0
    assert "resuming: 3 of" in capsys.readouterr().err
    assert [p.name for p in tmp_path.glob("results/*")] == [folder.name]  # resumed, not a second folder
    stored = len(TrialStore(folder).records())
    assert main(["run", "--suite", "smoke", "--variants", "mf", "--seeds", "2", "--epochs", "1", "--resume"]) == 0
    assert len(TrialStore(folder).records()) == stored  # --resume found it: nothing ran again
    assert main(["run", "--suite", "quick", "--resume"]) == 2
    assert "no results/quick-* run folder to resume here" in capsys.readouterr().err

"""What an adversarial user does: bad flags, bad files, damaged run folders, two runs at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.__main__ import main
from bench.run.store import TrialStore, trial_key
from tests.conftest import FAST, ROOT


def _err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


def _copy(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to)
    return to


def test_a_torn_last_line_costs_only_its_own_trial(fast_run, tmp_path):
    """Before, the rerun's record was appended onto the fragment and lost: 44 of 45."""
    run = _copy(fast_run, tmp_path / "run")
    store = TrialStore(run)
    text = store.path.read_bytes()
    n = len(text.splitlines())
    store.path.write_bytes(text[: len(text) - 40])  # a crash mid-write of the last record
    assert main([*FAST, "--out", str(run)]) == 0
    lines = store.path.read_bytes().splitlines()
    assert all(json.loads(x) for x in lines) and len(lines) == n
    assert len(pd.read_csv(run / "report" / "trials.csv")) == n


def test_unreadable_lines_are_skipped_and_reported_not_fatal(fast_run, tmp_path, capsys):
    run = _copy(fast_run, tmp_path / "run")
    store = TrialStore(run)
    lines = store.path.read_bytes().splitlines(keepends=True)
    store.path.write_bytes(b"".join([lines[0], b"null\n", b"\xff\xfe garbage\n", *lines[1:]]))
    (run / "manifest.json").write_text('{"suite": {"na')  # truncated
    assert main([*FAST, "--out", str(run)]) == 0
    assert "skipped unreadable line(s) [2, 3]" in capsys.readouterr().err
    assert "lines [2, 3] could not be read" in (run / "report" / "summary.md").read_text()
    assert json.loads((run / "manifest.json").read_text())["runs"]
    assert (run / "manifest.json.damaged").is_file()
    assert main(["report", str(run)]) == 0


def test_a_second_run_on_the_same_folder_is_refused(fast_run, tmp_path, capsys):
    run = _copy(fast_run, tmp_path / "run")
    with TrialStore(run).locked():  # another bench run holds it
        assert main([*FAST, "--out", str(run)]) == 2
    assert "another bench run is using this folder" in _err(capsys)
    before = TrialStore(run).path.read_text()
    assert main([*FAST[:-1], "2", "--out", str(run)]) == 2  # --epochs 2 on a folder of 1-epoch trials
    assert "was run with train.epochs = 1 (this run: 2)" in _err(capsys)
    assert TrialStore(run).path.read_text() == before


def test_two_concurrent_runs_never_duplicate_trials(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bench", *FAST, "--out", str(out)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    records = [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines()]
    keys = [trial_key(r) for r in records]
    assert len(keys) == len(set(keys))


def test_report_of_a_run_where_every_trial_failed(tmp_path):
    """Before: KeyError / IndexError in the report. The promise: failures recorded, exit 1."""
    params = tmp_path / "best_params.json"
    params.write_text(json.dumps({"variants": {"mf": {"train": {"lr": 1e9, "optimizer": "sgd"}}}}))
    out = tmp_path / "run"
    code = main(["run", "--suite", "smoke", "--variants", "mf", "--seeds", "1", "--epochs", "1",
                 "--datasets", "synthetic", "--params", str(params), "--out", str(out)])
    assert code in (0, 1)
    store = TrialStore(out)
    for r in store.records():  # make every learned trial a failure, as a crashing model would
        if not r["variant"].startswith("baseline-"):
            store.append({**r, "status": "failed", "error": "RuntimeError: boom", "metrics": None})
    assert main(["report", str(out)]) == 0
    summary = (out / "report" / "summary.md").read_text()
    assert "failed" in summary and "No trial of this data set succeeded" in summary
    assert not list(out.glob(".*.tmp*"))


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--seeds", "0"], "argument --seeds: must be >= 1, not 0"),
    (["run", "--epochs", "-1"], "argument --epochs: must be >= 1, not -1"),
    (["run", "--devices", "tpu"], "unknown device 'tpu'"),
    (["run", "--data-dir", "nope-not-here"], "nope-not-here: data directory not found"),
    (["list", "--data-dir", "/nonexistent"], "/nonexistent: data directory not found"),
    (["tune", "--dataset", "synthetic", "--variant", "mf", "--device", "tpu"], "unknown device 'tpu'"),
    (["tune", "--dataset", "synthetic", "--variant", "mf", "--trials", "1", "--storage", "not a url"],
     "not a url: not a database URL"),
    (["tune", "--dataset", "synthetic", "--variant", "mf", "--trials", "1", "--storage",
      "sqlite:////proc/nope/optuna.db"], "sqlite:////proc/nope/optuna.db: cannot"),
])
def test_bad_flags_are_one_line_errors_with_exit_2(argv, message, tmp_path):
    res = subprocess.run([sys.executable, "-m", "bench", *argv, *(["--out", str(tmp_path / "o")]
                                                                    if argv[0] in ("run", "tune") else [])],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and message in res.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o" / "trials.jsonl").exists()


def test_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    assert main([*FAST, "--out", str(target)]) == 2
    assert "afile: is a file, not a run folder" in _err(capsys)


@pytest.mark.parametrize(("variants", "message"), [
    ({"gmf": "fast"}, "variant 'gmf': expected an object with 'model' and 'train' objects"),
    ({"gmf": {"train": {"task": "ranking"}}}, "train.task is set by the data set's protocol"),
])
def test_params_files_that_would_misconfigure_are_refused(tmp_path, capsys, variants, message):
    params = tmp_path / "best_params.json"
    params.write_text(json.dumps({"variants": variants}))
    assert main([*FAST, "--params", str(params), "--out", str(tmp_path / "o")]) == 2
    assert message in _err(capsys)


def test_help_answers_without_importing_torch():
    code = ("import sys\nfrom bench.__main__ import build_parser\nbuild_parser()\n"
            "assert 'torch' not in sys.modules and 'optuna' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
    res = subprocess.run([sys.executable, "-m", "bench", "run", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert "(default: smoke)" in res.stdout


def test_console_script_is_declared():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ncf-bench"] == "bench.__main__:main"


# -- a reviewer's adversarial pass: each a one-line error before anything trains, or a reported skip --

def test_a_foreign_line_with_a_string_seed_is_skipped_and_reported(fast_run, tmp_path, capsys):
    run = _copy(fast_run, tmp_path / "run")
    store = TrialStore(run)
    first = json.loads(store.path.read_text().splitlines()[0])
    with open(store.path, "a") as handle:
        handle.write(json.dumps({**first, "seed": "0"}) + "\n")
    assert main(["report", str(run)]) == 0
    assert main([*FAST, "--out", str(run)]) == 0
    assert f"skipped unreadable line(s) [{len(store.path.read_text().splitlines())}]" in capsys.readouterr().err


def test_an_ok_line_without_metrics_is_run_again(fast_run, tmp_path):
    run = _copy(fast_run, tmp_path / "run")
    store = TrialStore(run)
    lines = store.path.read_text().splitlines()
    hollow = json.loads(lines[0])
    hollow.pop("metrics")
    store.path.write_text("\n".join([json.dumps(hollow), *lines[1:]]) + "\n")
    assert main([*FAST, "--out", str(run)]) == 0
    assert trial_key(hollow) in {trial_key(r) for r in store.records()}
    assert len(pd.read_csv(run / "report" / "trials.csv")) == len(lines)


@pytest.mark.parametrize("metrics", [{"hr@10": 0.9}, {"bogus": 1.0}, "nan"])
def test_an_ok_line_with_hollow_or_nan_metrics_is_run_again_not_trusted(fast_run, tmp_path, capsys, metrics):
    """Before: "resuming: 30 of 30", a table averaging one seed with n = 2, the edited value bolded."""
    run = _copy(fast_run, tmp_path / "run")
    store = TrialStore(run)
    lines = store.path.read_text().splitlines()
    hollow = json.loads(lines[0])
    own = hollow["metrics"]
    hollow["metrics"] = {**own, next(iter(own)): float("nan")} if metrics == "nan" else metrics
    store.path.write_text("\n".join([*lines, json.dumps(hollow)]) + "\n")  # the latest line of its key
    assert main([*FAST, "--out", str(run)]) == 0
    assert f"skipped unreadable line(s) [{len(lines) + 1}]" in capsys.readouterr().err
    again = next(r for r in store.records() if trial_key(r) == trial_key(hollow))
    assert again["metrics"] == json.loads(lines[0])["metrics"]  # trained again, to the same numbers


@pytest.mark.parametrize(("train", "model", "message"), [
    ({"n_negatives": -1}, {}, "n_negatives must be a whole number >= 1, not -1"),
    ({"k": 0}, {}, "k must be a whole number >= 1, not 0"),
    ({"lr": float("nan")}, {}, "lr must be a positive number, not nan"),
    ({"weight_decay": -1}, {}, "weight_decay must be a number >= 0, not -1"),
    ({}, {"dropout": 1.5}, "dropout must lie in [0, 1)"),
    ({}, {"dropout": -0.5}, "dropout must lie in [0, 1)"),
    ({}, {"n_factors": 8.5}, "n_factors must be a whole number, not 8.5"),
])
def test_out_of_range_settings_are_refused_up_front(tmp_path, capsys, train, model, message):
    params = tmp_path / "best_params.json"
    params.write_text(json.dumps({"variants": {"mf": {"train": train, "model": model}}}))
    out = tmp_path / "o"
    assert main([*FAST, "--params", str(params), "--out", str(out)]) == 2
    assert message in _err(capsys) and not out.exists()


@pytest.mark.parametrize(("content", "message"), [
    ({"dataset": "ml-1m", "task": "ranking", "variants": {"mf": {"train": {"lr": 0.01}}}},
     "settings for mf were tuned on ml-1m (ranking), which this run does not include"),
    ({"dataset": "synthetic", "task": "regression", "variants": {"mf": {"train": {"lr": 0.01}}}},
     "settings for mf were tuned on synthetic (regression)"),
    ({"variants": {"svd": {"train": {"lr": 0.01}}}}, "'svd' is not a variant"),
    ({"variants": {"neumf": {"train": {"lr": 0.01}}}},
     "settings for neumf, which this run does not train (--variants mf)"),
    ({"variants": {"mf": {"train": {"sparse": "false"}}}}, "variant 'mf': sparse must be true or false, not 'false'"),
    ({"variants": {"mf": {"train": {"lr": True}}}}, "variant 'mf': lr must be a number, not True"),
    ({"variants": {"mf": {"train": {"epochs": 2.0}}}}, "variant 'mf': epochs must be a whole number, not 2.0"),
    ({"variants": {"ease": {"model": {"l2": "10"}}}}, "variant 'ease': l2 must be a number, not '10'"),
])
def test_a_params_file_for_something_else_is_refused_not_ignored(tmp_path, capsys, content, message):
    """Before: a file for neumf alone was ignored by an mf run; "sparse": "false" failed the trial at
    training time, and "lr": true trained at lr 1."""
    params = tmp_path / "best_params.json"
    params.write_text(json.dumps(content))
    assert main([*FAST, "--params", str(params), "--out", str(tmp_path / "o")]) == 2
    assert message in _err(capsys)


def test_names_that_say_nothing_or_twice_are_refused(tmp_path, capsys):
    data = tmp_path / "data" / "ml-100k"
    data.mkdir(parents=True)
    (data / "u.data").write_text("".join(f"{u}\t{i}\t4\t{i}\n" for u in range(1, 30) for i in range(1, 40)))
    cases = [(["--datasets", ",,"], "--datasets: names nothing"),
             (["--variants", "mf,mf"], "--variants: names ['mf'] more than once"),
             (["--datasets", f"ml-100k,{data}", "--data-dir", str(tmp_path / "data")],
              f"ml-100k and {data} are the same data set")]
    for extra, message in cases:
        assert main(["run", "--suite", "smoke", "--seeds", "1", "--epochs", "1", *extra,
                     "--out", str(tmp_path / "o")]) == 2
        assert message in _err(capsys)
    assert not (tmp_path / "o").exists()


def test_an_unwritable_store_is_a_one_line_error(fast_run, tmp_path, capsys):
    import os

    if os.geteuid() == 0:  # root writes anyway: make the store a folder, which no one can append to
        run = _copy(fast_run, tmp_path / "run")
        path = TrialStore(run).path
        path.unlink()
        path.mkdir()
    else:
        run = _copy(fast_run, tmp_path / "run")
        TrialStore(run).path.chmod(0o444)
    assert main([*FAST, "--seeds", "3", "--out", str(run)]) == 2
    assert _err(capsys).startswith(f"error: {TrialStore(run).path}: ")


def test_a_data_set_where_every_learned_variant_failed_keeps_the_others_report(tmp_path):
    """Before: a KeyError in the verdict, and no summary for the other data set either."""
    out = tmp_path / "run"
    assert main(["run", "--suite", "smoke", "--variants", "mf,gmf", "--seeds", "2", "--epochs", "1",
                 "--out", str(out)]) == 0
    store = TrialStore(out)
    for r in store.records():
        if r["task"] == "ranking" and not r["variant"].startswith("baseline-"):
            store.append({**r, "status": "failed", "error": "RuntimeError: boom", "metrics": None})
    assert main(["report", str(out)]) == 0
    summary = (out / "report" / "summary.md").read_text()
    assert "## synthetic — rating — cpu" in summary and "No trial of this data set succeeded" in summary


def test_report_of_a_folder_of_unreadable_lines_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "trials.jsonl").write_bytes(b"\xff\xfe\nnull\n")
    assert main(["report", str(out)]) == 2
    assert _err(capsys) == f"error: {out / 'trials.jsonl'}: no readable trials to report (lines [1, 2] could not " \
                           "be read)"


def test_a_report_killed_at_any_point_leaves_a_whole_one(fast_run, tmp_path):
    """The report is written into a new folder and swapped in by one rename: killed after the plots,
    after a file, once linked, and (for a folder copied with its link resolved) after the copy is
    set aside, ``report`` is the old report or the new one, whole."""
    import os
    import signal

    run = _copy(fast_run, tmp_path / "run")
    names = {"trials.csv", "significance.csv", "throughput.csv", "summary.md"}

    def whole() -> str | None:
        folder = run / "report"
        assert names <= {p.name for p in folder.iterdir()}
        summary = (folder / "summary.md").read_text()
        for plot in (line.split("(")[1].rstrip(")") for line in summary.splitlines() if line.startswith("![")):
            assert (folder / plot).is_file()
        return os.readlink(folder) if folder.is_symlink() else None

    cmd = [sys.executable, "-m", "bench", "report", str(run)]
    assert whole() is None  # _copy resolves the link: a folder where the link was
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, env={**os.environ, "BENCH_KILL_AT": "report-swap:1"})
    assert res.returncode == -signal.SIGKILL and whole() is None
    assert main(["report", str(run)]) == 0  # the folder and the new link exchanged in one step
    before = whole()
    assert before is not None
    # After the plots, after a file (the draft holds some), then linked but not swapped in: every
    # kill before the swap leaves one of these drafts (the files in between were dropped for CI time).
    kills = ["report-file:1", "report-file:3", "report-swap:1"]
    for at in kills:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, env={**os.environ, "BENCH_KILL_AT": at})
        assert res.returncode == -signal.SIGKILL and whole() == before, at
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode == 0
    assert whole() != before and len(list(run.glob(".report-*"))) == 1

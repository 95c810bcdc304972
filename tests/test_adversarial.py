"""What a second adversarial review found, each reproduced: a plan that ate memory, data swapped
under a label, a user's files removed, labels that shared a file, a manifest of one call, and
tracebacks where one line was due. Each test failed before its fix."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench import layout
from bench.__main__ import main
from bench.run.store import TrialStore
from tests.conftest import FAST, ROOT, ml1m_like

pytestmark = pytest.mark.slow  # subprocess runs, kills and servers: minutes in all


def _err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


# -- the plan: bounded, and refusing what the run refuses ------------------------------------------

def test_a_stack_never_holds_more_trials_than_its_study(tmp_path, capsys):
    """Before: --tune-stack 1000000000 made the probe build that many models (22.5 GB, killed), and
    the summary said "1000000000 at a time" where 3 ran."""
    assert main(["run", "--suite", "smoke", "--datasets", "synthetic", "--epochs", "1", "--seeds", "1",
                 "--variants", "gmf", "--tune", "3", "--tune-stack", "1000000000", "--plan",
                 "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "study gmf             3 trials, 3 at a time" in out and not (tmp_path / "x").exists()


def test_the_probe_stacks_a_bounded_number_of_models(tmp_path, monkeypatch):
    """A plan's probe times at most PROBE_STACK models however many seeds or trials a stack holds
    (before: --seeds 100000 --plan built them all, over 6 GB)."""
    from bench.estimate import probe as cost

    built: list[int] = []
    real = cost.seeded_model
    monkeypatch.setattr(cost, "seeded_model", lambda *a, **k: built.append(a[3]) or real(*a, **k))
    assert main(["run", "--suite", "smoke", "--datasets", "synthetic", "--epochs", "1", "--seeds", "40",
                 "--variants", "gmf", "--plan", "--out", str(tmp_path / "x")]) == 0
    assert built and max(built) == cost.PROBE_STACK - 1  # seeds 0..15 of a group of 40


def test_every_job_of_a_plan_has_its_own_key(tmp_path):
    """Per-seed baseline units shared one key (--seeds 2000 priced 1.0 min of work as 25.5 min)."""
    from bench.run.options import RunOptions
    from bench.run.plan import jobs
    from bench.run.runner import Runner
    from bench.suites import SUITES

    opts = RunOptions(datasets=("synthetic",), variants=("mf",), seeds=3, epochs=1, jobs=1)
    runner = Runner(SUITES["smoke"], opts, tmp_path / "never-written", log=lambda m: None)
    runner.load()
    work = jobs(runner.make_plan(set()), tmp_path, 1, "cpu")
    keys = [j.key for j in work]
    assert len(keys) == len(set(keys)) == 1 + 3 * 2  # one mf unit; two baselines a seed
    assert {k.seed for k in keys if k.variant.startswith("baseline-")} == {0, 1, 2}


def test_plan_refuses_what_the_run_refuses(fast_run, tmp_path, capsys):
    """Before: "0 to run" on a folder the real run refuses for --epochs."""
    run = shutil.copytree(fast_run, tmp_path / "run")
    flags = ["run", "--suite", "smoke", "--variants", "mf", "--seeds", "2", "--epochs", "2", "--out", str(run)]
    assert main(flags) == 2
    refused = _err(capsys)
    assert "was run with train.epochs = 1 (this run: 2)" in refused
    assert main([*flags, "--plan"]) == 2
    assert _err(capsys) == refused


# -- data under a label, and labels in file names -------------------------------------------------

def test_other_data_under_the_same_label_is_refused_not_mixed(tmp_path, capsys):
    """Before: "resuming: 2 of 4", and one table held seed 0 of one file and seed 1 of another."""
    a, b = tmp_path / "a", tmp_path / "b"
    ml1m_like(a / "ncf", "ml-1m", seed=0)
    ml1m_like(b / "ncf", "ml-1m", seed=1)
    out = tmp_path / "run"
    flags = ["run", "--suite", "full", "--datasets", "ncf-ml-1m", "--variants", "mf", "--epochs", "1",
             "--out", str(out)]
    assert main([*flags, "--data-dir", str(a), "--seeds", "1"]) == 0
    stored = TrialStore(out).path.read_bytes()
    assert main([*flags, "--data-dir", str(b), "--seeds", "2"]) == 2
    assert "was run with other data under the same label (data fingerprint" in _err(capsys)
    assert TrialStore(out).path.read_bytes() == stored
    assert main([*flags, "--data-dir", str(a), "--seeds", "2"]) == 0  # the same files again: resumed


def test_labels_that_differ_only_in_unsafe_characters_never_share_a_file():
    """Before: "a/p" and "a_p" shared checkpoints (a pretrained NeuMF started from another set's GMF),
    study names and plots."""
    from bench.compute.pretrain import PretrainCache
    from bench.compute.storage import study_name
    from bench.suites import synthetic
    from ncf_core import ModelConfig, TrainConfig

    labels = ["a/p", "a_p", "a:p", "x/clean/c", "x/clean_c", "plain-name.v2"]
    names = [layout.file_label(label) for label in labels]
    assert len(set(names)) == len(labels) and names[-1] == "plain-name.v2"
    assert all("/" not in n for n in names)
    specs = [replace(synthetic("ranking"), name=label) for label in labels[:2]]
    assert study_name(specs[0], "gmf") != study_name(specs[1], "gmf")
    keys = [PretrainCache.key(s, "cpu", 0, "gmf", ModelConfig(), TrainConfig(task="ranking")) for s in specs]
    assert keys[0] != keys[1]
    same_label = [replace(specs[0], fingerprint=f) for f in ("aaaa", "bbbb")]
    assert len({PretrainCache.key(s, "cpu", 0, "gmf", ModelConfig(), TrainConfig(task="ranking"))
                for s in same_label}) == 2


# -- the user's files ---------------------------------------------------------------------------------

def test_a_folder_bench_did_not_make_is_refused_and_left_alone(tmp_path, capsys):
    """Before: report/ was renamed and removed (notes.md gone) and the user's manifest merged into."""
    user = tmp_path / "U"
    (user / "report").mkdir(parents=True)
    (user / "report" / "notes.md").write_text("notes")
    (user / "manifest.json").write_text('{"my": "config"}')
    for extra in ([], ["--plan"]):
        assert main([*FAST, "--out", str(user), *extra]) == 2
        assert "is not a run folder (it holds manifest.json, report, and no trials.jsonl)" in _err(capsys)
    assert (user / "report" / "notes.md").read_text() == "notes"
    assert json.loads((user / "manifest.json").read_text()) == {"my": "config"}
    assert sorted(p.name for p in user.iterdir()) == ["manifest.json", "report"]


def test_a_users_file_in_the_report_is_never_removed_with_it(fast_run, tmp_path, capsys):
    run = shutil.copytree(fast_run, tmp_path / "run", symlinks=True)
    (run / "report" / "notes.md").write_text("mine")
    before = sorted(p.name for p in (run / "report").iterdir())
    assert main(["report", str(run)]) == 2
    assert _err(capsys).endswith("notes.md: was not written by bench, and the report is rebuilt whole: "
                                 "move it out of the report folder")
    assert sorted(p.name for p in (run / "report").iterdir()) == before
    (run / "report" / "notes.md").unlink()
    assert main(["report", str(run)]) == 0


def test_a_copied_report_folder_of_bench_files_is_still_replaced(fast_run, tmp_path):
    """cp -rL makes the report link a folder: bench's files in it, so it is bench's to replace."""
    run = tmp_path / "run"
    shutil.copytree(fast_run, run, symlinks=False)
    assert (run / "report").is_dir() and not (run / "report").is_symlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report").is_symlink()


# -- one line, nothing half-written ----------------------------------------------------------------

def _bench(*argv: str, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, preexec_fn=limit)


@pytest.mark.parametrize("command", ["run", "tune", "data list"])
def test_a_negatives_file_that_is_not_utf8_is_one_line(tmp_path, command):
    prefix = ml1m_like(tmp_path / "d" / "ncf", "ml-1m")
    negatives = Path(f"{prefix}.test.negative")
    raw = negatives.read_bytes()
    negatives.write_bytes(raw[:raw.index(b"\n") + 1] + b"\xff\xfe" + raw[raw.index(b"\n") + 1:])
    argv = {"run": ["run", "--suite", "full", "--datasets", "ncf-ml-1m", "--variants", "mf", "--seeds", "1",
                    "--epochs", "1", "--out", str(tmp_path / "o")],
            "tune": ["tune", "--dataset", "ncf-ml-1m", "--variant", "gmf", "--trials", "1",
                     "--out", str(tmp_path / "o")],
            "data list": ["data", "list"]}[command]
    res = _bench(*argv, "--data-dir", str(tmp_path / "d"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"error: {negatives}: line 2 is not UTF-8 text"
    assert not (tmp_path / "o").exists()


def test_a_byte_order_mark_is_read_past(tmp_path, capsys):
    prefix = ml1m_like(tmp_path / "d" / "ncf", "ml-1m")
    for part in ("test.negative", "train.rating"):
        path = Path(f"{prefix}.{part}")
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert main(["run", "--suite", "full", "--data-dir", str(tmp_path / "d"), "--datasets", "ncf-ml-1m",
                 "--variants", "mf", "--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "o")]) == 0


def test_a_full_disk_during_the_report_keeps_the_last_whole_one(fast_run, tmp_path):
    """Before: PIL's OSError, and a manifest.tmp left behind."""
    run = shutil.copytree(fast_run, tmp_path / "run", symlinks=True)
    before = {p.name: p.read_bytes() for p in (run / "report").iterdir()}
    res = _bench("report", str(run), limit_bytes=20_000)  # the plots are larger
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"error: {run / 'report'}: cannot write the report (File too large)"
    assert {p.name: p.read_bytes() for p in (run / "report").iterdir()} == before
    assert [p.name for p in run.glob(".report-*") if p.is_dir()] == [(run / "report").readlink().name]


def test_a_manifest_that_cannot_be_written_is_one_line_and_leaves_no_temporary(fast_run, tmp_path, capsys):
    run = shutil.copytree(fast_run, tmp_path / "run", symlinks=True)
    (run / "manifest.tmp").mkdir()  # root writes anywhere: a folder where the temporary file goes
    assert main([*FAST, "--seeds", "3", "--out", str(run)]) == 2
    assert _err(capsys) == f"error: {run / 'manifest.json'}: cannot write the manifest (Is a directory)"


@pytest.mark.parametrize("argv", [["run", "--sampler-seed", "-1", "--tune", "2"],
                                  ["tune", "--dataset", "synthetic", "--variant", "mf", "--sampler-seed", "-1"]])
def test_a_negative_sampler_seed_is_a_flag_error(argv, tmp_path):
    res = _bench(*argv, "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().endswith("argument --sampler-seed: must be >= 0, not -1")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("manifest", ['{"datasets": 3}', '{"datasets": {"a": 1}}', "[]"])
def test_a_manifest_of_another_shape_does_not_stop_the_report(fast_run, tmp_path, manifest):
    run = shutil.copytree(fast_run, tmp_path / "run", symlinks=True)
    (run / "manifest.json").write_text(manifest)
    assert main(["report", str(run)]) == 0


@pytest.mark.parametrize(("content", "message"), [
    (None, "file not found"), ("{", "is not JSON"), ("[1]", "is not pytest-benchmark JSON"),
    ('{"benchmarks": [{"extra_info": {}}]}', "is not pytest-benchmark JSON")])
def test_benchtable_on_a_file_that_is_not_its_json(tmp_path, capsys, content, message):
    path = tmp_path / "bench.json"
    if content is not None:
        path.write_text(content)
    assert main(["benchtable", str(path), "--out", str(tmp_path / "t.md")]) == 2
    assert _err(capsys).startswith(f"error: {path}: {message}") and not (tmp_path / "t.md").exists()


def test_the_manifest_describes_every_call_of_a_resumed_run(tmp_path):
    out = tmp_path / "run"
    base = ["run", "--suite", "smoke", "--datasets", "synthetic", "--epochs", "1", "--out", str(out)]
    assert main([*base, "--variants", "mf", "--seeds", "1"]) == 0
    assert main([*base, "--variants", "gmf", "--seeds", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seeds"] == [0, 1] and manifest["variants"] == ["mf", "gmf"]
    assert [(r["seeds"], r["variants"]) for r in manifest["runs"]] == [([0], ["mf"]), ([0, 1], ["gmf"])]


def test_an_interim_report_reads_a_folder_a_run_holds_and_writes_nothing_there(fast_run, tmp_path, capsys):
    """A long run holds its folder; `bench report` says how to look anyway, and `--to` does it."""
    run = tmp_path / "run"
    shutil.copytree(fast_run, run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    with TrialStore(run).locked():  # what a running `bench run` holds
        assert main(["report", str(run)]) != 0
        assert "bench report RUN_DIR --to DIR" in _err(capsys)
        assert main(["report", str(run), "--to", str(run / "interim")]) != 0
        assert "--to must be outside the run folder" in _err(capsys)
        assert main(["report", str(run), "--to", str(tmp_path / "interim")]) == 0
        assert main(["report", str(run), "--to", str(tmp_path / "interim")]) == 0  # replaced, as the run's is
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    interim = (tmp_path / "interim" / "trials.csv").read_text()
    assert interim == (run / layout.REPORT / "trials.csv").read_text()
    target = (tmp_path / "interim").resolve().name  # a link swapped in whole, as the run's report is
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target, "interim", "run"])  # no draft left


def test_a_second_suite_on_a_run_folder_is_refused_before_it_writes(fast_run, tmp_path, capsys):
    run = shutil.copytree(fast_run, tmp_path / "run", symlinks=True)
    before = TrialStore(run).path.read_bytes()
    assert main(["run", "--suite", "quick", "--synthetic", "--variants", "mf", "--seeds", "1", "--epochs", "1",
                 "--out", str(run)]) == 2
    assert _err(capsys) == (f"error: {run}: holds a smoke run: a quick run would share its tables; give another "
                            "--out (or --suite smoke to resume it)")
    assert TrialStore(run).path.read_bytes() == before

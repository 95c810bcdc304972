"""The harness end to end: smoke suite files, recomputed statistics, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import stats
from bench.__main__ import main
from bench.store import TrialStore, trial_key

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--suite", "smoke", "--epochs", "2"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "run"
    assert main(["run", *TINY, "--out", str(out)]) == 0
    return out


def test_smoke_writes_every_output(smoke_run):
    for name in ("trials.csv", "significance.csv", "throughput.csv", "summary.md", "manifest.json",
                 "loss-synthetic-rating.png", "metrics-synthetic-ranking.png"):
        assert (smoke_run / name).is_file(), name
    trials = pd.read_csv(smoke_run / "trials.csv")
    learned = trials[~trials["variant"].str.startswith("baseline-")]
    assert set(learned["variant"]) == {"mf", "gmf", "mlp", "neumf", "neumf-pre-adam", "neumf-pre-sgd"}
    assert len(learned) == 6 * 3 * 2 and (trials["status"] == "ok").all()
    assert {"mae", "rmse", "r2", "hr@10", "ndcg@10", "full_recall@10"} <= set(trials.columns)
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    assert manifest["seeds"] == [0, 1, 2] and "torch" in manifest["environment"]["versions"]
    record = TrialStore(smoke_run).records()[0]
    assert record["config"]["train"]["epochs"] == 2 and "model" in record["config"]


def test_stacked_run_matches_one_seed_at_a_time(smoke_run, tmp_path):
    """The suite stacks its seeds by default; each trial must be what training it alone gives."""
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    assert "stacked" in manifest["seed_stacking"]["synthetic"]
    out = tmp_path / "alone"
    assert main(["run", *TINY, "--no-stack", "--out", str(out)]) == 0
    stacked = pd.read_csv(smoke_run / "trials.csv").set_index(["task", "variant", "seed"]).sort_index()
    alone = pd.read_csv(out / "trials.csv").set_index(["task", "variant", "seed"]).sort_index()
    learned = ~stacked.index.get_level_values("variant").str.startswith("baseline-")
    assert (stacked.loc[learned, "stacked_seeds"] == 3).all()
    assert (alone["stacked_seeds"].fillna(1) == 1).all()
    for metric in ("rmse", "r2", "hr@10", "ndcg@10", "full_recall@10"):
        np.testing.assert_allclose(stacked[metric], alone[metric], rtol=1e-3, atol=1e-4, err_msg=metric)
    assert "one seed at a time (--no-stack)" in (out / "manifest.json").read_text()


def test_seeds_stack_in_groups_that_fit_memory(monkeypatch, tmp_path):
    from bench import runner as runner_mod
    from bench.suites import SUITES, synthetic
    from ncf_core.data import load

    spec = synthetic("ranking")
    data = load("synthetic", task="ranking", **dict(spec.options))
    pairs = len(data) * (1 + spec.train.n_negatives)
    run = runner_mod.Runner(SUITES["smoke"], runner_mod.RunOptions(), tmp_path)
    seeds = list(range(10))
    assert run.seed_groups(spec, data, seeds) == [seeds]
    monkeypatch.setattr(runner_mod, "memory_budget", lambda devices: 64 * pairs * 4)
    assert run.seed_groups(spec, data, seeds) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    monkeypatch.setattr(runner_mod, "memory_budget", lambda devices: 1)
    assert run.seed_groups(spec, data, seeds) == [[s] for s in seeds]


def test_pretrained_neumf_starts_from_the_runs_own_tuned_gmf_and_mlp(tmp_path):
    """With tuned GMF/MLP settings, the pretrained NeuMF starts from the GMF and MLP trained with
    them (logit identity at epoch 0: an SGD step of 1e-12 leaves it there), and its stored config
    shows the shapes it really has."""
    import torch

    from bench.params import TunedParams
    from bench.pretrain import PretrainCache, pretrained_neumf
    from bench.runner import spec_for
    from bench.suites import SUITES
    from ncf_core import ModelConfig, TrainConfig
    from ncf_core.data import load, split_for_seed
    from ncf_core.evaluate import Evaluator

    params = tmp_path / "best_params.json"
    params.write_text(json.dumps({"dataset": "synthetic", "task": "rating", "variants": {
        "gmf": {"model": {"n_factors": 12}, "train": {"lr": 0.01}},
        "mlp": {"model": {"mlp_layers": [24, 12, 6]}},
        "neumf-pre-sgd": {"model": {"alpha": 0.3}, "train": {"lr": 1e-12}}}}))
    out = tmp_path / "run"
    assert main(["run", "--suite", "smoke", "--epochs", "1", "--seeds", "1", "--variants", "gmf,mlp,neumf-pre-sgd",
                 "--params", str(params), "--out", str(out)]) == 0
    record = next(r for r in TrialStore(out).records() if r["variant"] == "neumf-pre-sgd" and r["task"] == "rating")
    assert record["config"]["model"]["n_factors"] == 12 and record["config"]["model"]["mlp_layers"] == [24, 12, 6]
    spec = spec_for("synthetic", SUITES["smoke"])
    split = split_for_seed(load("synthetic", task="rating", **dict(spec.options)), "rating", 0)
    cache = PretrainCache(out / "checkpoints")
    gmf_cfg = ModelConfig(**{**vars(spec.model), "n_factors": 12})
    mlp_cfg = ModelConfig(**{**vars(spec.model), "mlp_layers": (24, 12, 6)})
    train = TrainConfig(**{**vars(spec.train), "epochs": 1})
    untrainable = lambda *a: pytest.fail("the run's checkpoints should serve these")  # noqa: E731
    gmf = cache.models("gmf", "synthetic", "rating", {0: split}, [0], "cpu", gmf_cfg,
                       TrainConfig(**{**vars(train), "lr": 0.01}), untrainable)[0]
    mlp = cache.models("mlp", "synthetic", "rating", {0: split}, [0], "cpu", mlp_cfg, train, untrainable)[0]
    neumf_cfg = ModelConfig(**{**vars(gmf_cfg), "mlp_layers": (24, 12, 6), "alpha": 0.3})
    start = pretrained_neumf(gmf, mlp, neumf_cfg, split)
    users, items = torch.from_numpy(split.test.users), torch.from_numpy(split.test.items)
    with torch.no_grad():
        torch.testing.assert_close(start(users, items), 0.3 * gmf(users, items) + 0.7 * mlp(users, items))
    expected = Evaluator(split, "test", "cpu").evaluate(start).metrics
    assert record["metrics"] == pytest.approx(expected, rel=1e-5)
    assert TunedParams.load([params]).for_variant("gmf", "synthetic", "ranking") == {}  # scoped to rating


def test_significance_matches_scipy_recomputed_from_trials_csv(smoke_run):
    trials = pd.read_csv(smoke_run / "trials.csv")
    sig = pd.read_csv(smoke_run / "significance.csv")
    rating = trials[trials["task"] == "rating"]
    a = rating[rating["variant"] == "gmf"].sort_values("seed")["rmse"].to_numpy()
    b = rating[rating["variant"] == "neumf"].sort_values("seed")["rmse"].to_numpy()
    row = sig[(sig["task"] == "rating") & (sig["metric"] == "rmse") & (sig["variant_a"] == "gmf")
              & (sig["variant_b"] == "neumf")].iloc[0]
    assert row["t_p"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-9)
    assert row["wilcoxon_p"] == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-9)
    d = a - b
    low, high = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["cohen_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    family = sig[(sig["task"] == "rating") & (sig["metric"] == "rmse") & (sig["device"] == "cpu")]
    m = len(family)
    ranks = family["t_p"].rank(method="first").astype(int)
    # Holm by hand: sort, multiply by (m - i + 1), running max, cap 1
    ordered = family.assign(r=ranks).sort_values("r")
    expected = np.minimum(np.maximum.accumulate((m - ordered["r"] + 1) * ordered["t_p"]), 1)
    assert ordered["holm_p"].to_numpy() == pytest.approx(expected.to_numpy())


def test_holm_by_hand():
    assert stats.holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])


def test_report_rebuilds_identical_tables(smoke_run, tmp_path):
    before = (smoke_run / "significance.csv").read_text()
    (smoke_run / "significance.csv").unlink()
    assert main(["report", str(smoke_run)]) == 0
    assert (smoke_run / "significance.csv").read_text() == before


def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bench", "run", *TINY, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    store = TrialStore(out)
    deadline = time.time() + 120
    while time.time() < deadline and len(store.records()) < 8:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(store.records())
    assert 8 <= killed_at < 45, "kill should land mid-suite"
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode == 0
    lines = [json.loads(x) for x in store.path.read_text().splitlines() if x.strip()]
    keys = [trial_key(r) for r in lines if r["status"] == "ok"]
    assert len(keys) == len(set(keys)) == 45  # 6 variants x 3 seeds x 2 tasks + 9 baselines
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 45


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


def test_a_diverging_trial_is_recorded_and_the_suite_goes_on(tmp_path, capsys):
    params = tmp_path / "best_params.json"
    params.write_text(json.dumps({"variants": {"gmf": {"train": {"lr": 1e9, "optimizer": "sgd"}}}}))
    out = tmp_path / "run"
    code = main(["run", *TINY, "--seeds", "1", "--variants", "mf,gmf", "--params", str(params),
                 "--out", str(out)])
    trials = pd.read_csv(out / "trials.csv")
    gmf = trials[trials["variant"] == "gmf"]
    assert code == 1
    assert "diverged" in set(gmf["status"])  # the ranking one; a saturated sigmoid may stay finite
    assert (trials[trials["variant"] == "mf"]["status"] == "ok").all()
    assert "diverged" in (out / "summary.md").read_text()


def test_params_file_with_unknown_field_is_rejected(tmp_path, capsys):
    params = tmp_path / "best_params.json"
    params.write_text(json.dumps({"variants": {"gmf": {"train": {"learning_rate": 0.1}}}}))
    assert main(["run", *TINY, "--params", str(params), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "best_params.json: variant 'gmf': unknown TrainConfig fields: ['learning_rate']" in err


def test_bench_speed_table(tmp_path):
    from bench.speed import measure, speed_markdown

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
    from bench import speed
    from ncf_core import ModelConfig

    monkeypatch.setattr(speed, "LARGE", {"n_users": 50, "n_items": 40, "batch_size": 64})
    monkeypatch.setattr(speed, "LARGE_MODEL", ModelConfig(n_factors=4, mlp_layers=(8, 4)))
    frame = speed.measure_large(("cpu",), log=lambda _: None)
    assert list(frame["engine"]) == ["dense"] and (frame["engine_samples_per_s"] > 0).all()
    assert frame["reference_samples_per_s"].isna().all()

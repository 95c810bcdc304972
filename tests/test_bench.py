"""The harness end to end: smoke suite files, recomputed statistics, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.__main__ import main
from bench.analysis import stats
from bench.run.store import TrialStore
from tests.conftest import ROOT

TINY = ["--suite", "smoke", "--epochs", "2"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "run"
    assert main(["run", *TINY, "--out", str(out)]) == 0
    return out


def test_smoke_writes_every_output(smoke_run):
    assert (smoke_run / "manifest.json").is_file()
    for name in ("trials.csv", "significance.csv", "throughput.csv", "summary.md",
                 "loss-synthetic-rating.png", "metrics-synthetic-ranking.png", "cd-synthetic-rating-cpu.png"):
        assert (smoke_run / "report" / name).is_file(), name
    trials = pd.read_csv(smoke_run / "report" / "trials.csv")
    learned = trials[~trials["variant"].str.startswith("baseline-")]
    ncf = {"mf", "gmf", "mlp", "neumf", "neumf-pre-adam", "neumf-pre-sgd"}
    references = {"ease", "ials", "itemknn", "rp3beta"}  # the ranking task's reference baselines
    assert set(learned["variant"]) == ncf | references
    assert set(learned.loc[learned["task"] == "rating", "variant"]) == ncf
    assert len(learned) == 6 * 3 * 2 + 4 * 3 and (trials["status"] == "ok").all()
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
    stacked = pd.read_csv(smoke_run / "report" / "trials.csv").set_index(["task", "variant", "seed"]).sort_index()
    alone = pd.read_csv(out / "report" / "trials.csv").set_index(["task", "variant", "seed"]).sort_index()
    names = stacked.index.get_level_values("variant")
    learned = ~names.str.startswith("baseline-") & ~names.isin(["ease", "ials", "itemknn", "rp3beta"])
    assert (stacked.loc[learned, "stacked_seeds"] == 3).all()
    assert (alone["stacked_seeds"].fillna(1) == 1).all()
    for metric in ("rmse", "r2", "hr@10", "ndcg@10", "full_recall@10"):
        np.testing.assert_allclose(stacked[metric], alone[metric], rtol=1e-3, atol=1e-4, err_msg=metric)
    assert "one seed at a time (--no-stack)" in (out / "manifest.json").read_text()


def test_seeds_stack_in_groups_that_fit_memory(monkeypatch):
    from bench.run import plan as plan_mod
    from bench.suites import synthetic
    from ncf_core.data import load

    spec = synthetic("ranking")
    data = load("synthetic", task="ranking", **dict(spec.options))
    pairs = len(data) * (1 + spec.train.n_negatives)
    seeds = list(range(10))
    assert plan_mod.seed_groups(spec, data, seeds, ("cpu",), True) == [seeds]
    monkeypatch.setattr(plan_mod, "memory_budget", lambda devices: 64 * pairs * 4)
    assert plan_mod.seed_groups(spec, data, seeds, ("cpu",), True) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    monkeypatch.setattr(plan_mod, "memory_budget", lambda devices: 1)
    assert plan_mod.seed_groups(spec, data, seeds, ("cpu",), True) == [[s] for s in seeds]
    assert plan_mod.seed_groups(spec, data, seeds, ("cpu",), False) == [[s] for s in seeds]


def test_pretrained_neumf_starts_from_the_runs_own_tuned_gmf_and_mlp(tmp_path):
    """With tuned GMF/MLP settings, the pretrained NeuMF starts from the GMF and MLP trained with
    them (logit identity at epoch 0: an SGD step of 1e-12 leaves it there), and its stored config
    shows the shapes it really has."""
    import torch

    from bench.compute.pretrain import PretrainCache, pretrained_neumf
    from bench.params import TunedParams
    from bench.run.datasets import spec_for
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
    data = load("synthetic", task="rating", **dict(spec.options))
    spec = replace(spec, fingerprint=data.fingerprint())  # as the run resolves it: checkpoints name their data
    split = split_for_seed(data, "rating", 0)
    cache = PretrainCache(out / "checkpoints")
    gmf_cfg = ModelConfig(**{**vars(spec.model), "n_factors": 12})
    mlp_cfg = ModelConfig(**{**vars(spec.model), "mlp_layers": (24, 12, 6)})
    train = TrainConfig(**{**vars(spec.train), "epochs": 1})
    untrainable = lambda *a: pytest.fail("the run's checkpoints should serve these")  # noqa: E731
    gmf = cache.models("gmf", spec, {0: split}, [0], "cpu", gmf_cfg,
                       TrainConfig(**{**vars(train), "lr": 0.01}), untrainable)[0]
    mlp = cache.models("mlp", spec, {0: split}, [0], "cpu", mlp_cfg, train, untrainable)[0]
    neumf_cfg = ModelConfig(**{**vars(gmf_cfg), "mlp_layers": (24, 12, 6), "alpha": 0.3})
    start = pretrained_neumf(gmf, mlp, neumf_cfg, split)
    users, items = torch.from_numpy(split.test.users), torch.from_numpy(split.test.items)
    with torch.no_grad():
        torch.testing.assert_close(start(users, items), 0.3 * gmf(users, items) + 0.7 * mlp(users, items))
    expected = Evaluator(split, "test", "cpu").evaluate(start).metrics
    assert record["metrics"] == pytest.approx(expected, rel=1e-5)
    assert TunedParams.load([params]).for_variant("gmf", "synthetic", "ranking") == {}  # scoped to rating


def test_significance_matches_scipy_recomputed_from_trials_csv(smoke_run):
    trials = pd.read_csv(smoke_run / "report" / "trials.csv")
    sig = pd.read_csv(smoke_run / "report" / "significance.csv")
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
    pairs = sig[(sig["task"] == "rating") & (sig["metric"] == "rmse") & (sig["device"] == "cpu")]
    simple = lambda v: v.startswith("baseline-") or v in ("ease", "ials", "itemknn", "rp3beta")  # noqa: E731
    among_baselines = pairs["variant_a"].map(simple) & pairs["variant_b"].map(simple)
    assert (pairs["family"] == np.where(among_baselines, "baselines", "ncf")).all() and among_baselines.any()
    for _, family in pairs.groupby("family"):  # Holm by hand within each: sort, times (m - i + 1), running max
        m = len(family)
        ordered = family.assign(r=family["t_p"].rank(method="first").astype(int)).sort_values("r")
        expected = np.minimum(np.maximum.accumulate((m - ordered["r"] + 1) * ordered["t_p"]), 1)
        assert ordered["holm_p"].to_numpy() == pytest.approx(expected.to_numpy())


def test_holm_by_hand():
    assert stats.holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])


def test_report_rebuilds_identical_tables(smoke_run, tmp_path):
    before = (smoke_run / "report" / "significance.csv").read_text()
    (smoke_run / "report" / "significance.csv").unlink()
    assert main(["report", str(smoke_run)]) == 0
    assert (smoke_run / "report" / "significance.csv").read_text() == before


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
    trials = pd.read_csv(out / "report" / "trials.csv")
    gmf = trials[trials["variant"] == "gmf"]
    assert code == 1
    assert "diverged" in set(gmf["status"])  # the ranking one; a saturated sigmoid may stay finite
    assert (trials[trials["variant"] == "mf"]["status"] == "ok").all()
    assert "diverged" in (out / "report" / "summary.md").read_text()


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


def _ncf_prefix(folder: Path, shift: int) -> Path:
    """Tiny NCF-format files; ``shift`` makes two sets with the same file names differ."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(shift)
    train, test, neg = [], [], []
    for u in range(40):
        items = rng.choice(150, 8, replace=False)
        train += [f"{u}\t{i}\t5\t{t}" for t, i in enumerate(items[:-1])]
        test.append(f"{u}\t{items[-1]}\t5\t99")
        others = [i for i in rng.permutation(150) if i not in items][:99]
        neg.append(f"({u},{items[-1]})\t" + "\t".join(map(str, others)))
    for suffix, lines in (("train.rating", train), ("test.rating", test), ("test.negative", neg)):
        (folder / f"p.{suffix}").write_text("\n".join(lines) + "\n")
    return folder / "p"


def test_two_data_sets_whose_paths_end_alike_keep_their_own_trials(tmp_path):
    """Before: one label 'p' for both, 16 lines instead of 8 and the first set's results gone."""
    a, b = _ncf_prefix(tmp_path / "a", 1), _ncf_prefix(tmp_path / "b", 2)
    out = tmp_path / "run"
    assert main(["run", "--suite", "smoke", "--datasets", f"{a},{b}", "--variants", "mf", "--seeds", "2",
                 "--epochs", "1", "--out", str(out)]) == 0
    trials = pd.read_csv(out / "report" / "trials.csv")
    assert sorted(trials["dataset"].unique()) == ["a/p", "b/p"]
    assert len(trials) == 2 * (2 + 2)  # per set: mf and popularity, 2 seeds each
    a_hr = trials[(trials["dataset"] == "a/p") & (trials["variant"] == "mf")]["hr@10"].to_numpy()
    b_hr = trials[(trials["dataset"] == "b/p") & (trials["variant"] == "mf")]["hr@10"].to_numpy()
    assert not np.array_equal(a_hr, b_hr)
    records = TrialStore(out).records()
    assert {r["config"]["data"]["path"] for r in records} == {str(a.resolve()), str(b.resolve())}
    assert main(["run", "--suite", "smoke", "--datasets", f"{a},{a}", "--out", str(tmp_path / "o")]) == 2


def test_a_path_runs_under_its_suites_protocol_for_that_kind(tmp_path):
    """`--suite full --datasets path/to/ncf/ml-1m` ran at 8 factors; a smoke run of real data ran 20 epochs."""
    from bench.run.datasets import spec_for
    from bench.suites import SUITES

    prefix = _ncf_prefix(tmp_path / "ncf", 1)
    full = spec_for(str(prefix), SUITES["full"])
    assert full.model.n_factors == 64 and full.model.mlp_layers == (256, 128, 64) and full.task == "ranking"
    smoke = spec_for(str(prefix), SUITES["smoke"])
    assert smoke.train.epochs == SUITES["smoke"].datasets[1].train.epochs
    ml1m = tmp_path / "ml-1m"
    ml1m.mkdir()
    (ml1m / "ratings.dat").write_text("1::1::5::1\n")
    by_name, by_path = spec_for("ml-1m", SUITES["full"]), spec_for(str(ml1m), SUITES["full"])
    assert (by_name.model, by_name.train) == (by_path.model, by_path.train)
    anime = spec_for("anime", SUITES["smoke"])
    assert anime.train.epochs == SUITES["smoke"].datasets[0].train.epochs and dict(anime.options)["max_rows"]


def test_a_suites_missing_data_set_is_a_labelled_announced_stand_in_only_when_asked(tmp_path, capsys):
    out = tmp_path / "run"
    empty = tmp_path / "data"
    empty.mkdir()
    flags = ["run", "--suite", "quick", "--data-dir", str(empty), "--variants", "mf", "--seeds", "2", "--epochs", "1",
             "--out", str(out)]
    assert main([*flags, "--offline"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {empty}: ml-100k not found (--offline): `python -m bench data fetch ml-100k --data-dir {empty}` "
        f"downloads it; anime needs a Kaggle account: put its files in {empty / 'anime'}; or leave them out with "
        "--datasets, or run synthetic stand-ins with --synthetic")
    assert not out.exists()
    assert main([*flags, "--synthetic"]) == 0
    assert "STAND-IN: anime not found" in capsys.readouterr().err
    summary = (out / "report" / "summary.md").read_text()
    assert summary.splitlines()[2].startswith("> **Stand-in data:** `anime` was not found")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stand_ins"] == {"anime": "synthetic-for-anime", "ml-100k": "synthetic-for-ml-100k"}
    datasets = set(pd.read_csv(out / "report" / "trials.csv")["dataset"])
    assert datasets == {"synthetic-for-anime", "synthetic-for-ml-100k"}
    assert manifest["runs"][0]["started"].endswith("Z") and manifest["environment"]["devices"]["cpu"]


def test_summary_throughput_names_the_task_and_warns_on_spread():
    from bench.analysis.report import summary_markdown, throughput_table

    rows = []
    for task, speeds in (("rating", [1e5, 1e5, 1.1e5]), ("ranking", [1e5, 1e4, 3e5])):
        for seed, sps_ in enumerate(speeds):
            rows.append({"dataset": "synthetic", "task": task, "variant": "mf", "device": "cpu", "seed": seed,
                         "status": "ok", "train_samples_per_s": sps_, "infer_samples_per_s": 1e6,
                         "train_seconds": 1.0, "stacked_seeds": 1, **({"threads": 1, "jobs": 2} if task == "rating"
                                                                       else {})})
    frame = pd.DataFrame(rows)
    table = throughput_table(frame)
    text = summary_markdown(frame.iloc[:0], pd.DataFrame(columns=["dataset", "task", "device", "metric"]),
                            pd.DataFrame(), table, pd.DataFrame(), [])
    import re

    assert re.search(r"\| synthetic +\| rating +\| mf +\| cpu +\| +3 \| +1 \| 1 × 2 ", text)
    assert re.search(r"\| synthetic +\| ranking +\| mf +\| cpu +\| +3 \| +1 \| — ", text)  # stored before threads were
    assert "varied by more than 25% across seeds for 1 row(s)" in text


def test_bench_speed_warns_when_the_reference_drifts():
    from bench.commands.speed import speed_markdown

    frame = pd.DataFrame([{"model": "mf", "device": "cpu", "batch_size": 256, "mode": "single", "engine": "dense",
                           "reference_samples_per_s": 26071.5, "engine_samples_per_s": 3e5, "speedup": 11.5,
                           "engine_steps_per_s": 1000.0, "reference_before": 48573.0, "reference_after": 3570.0,
                           "reference_stable": False}])
    text = speed_markdown(frame, "test")
    assert "**Warning:**" in text and "mf cpu batch 256" in text and "48,573" in text and "3,570" in text


def test_a_sparse_pretrained_neumf_really_has_sparse_embeddings(tmp_path):
    """Before, `sparse` was recorded but the pretrained NeuMF kept dense tables and dense Adam."""
    import dataclasses

    from bench.compute.pretrain import PretrainCache, pretrained_neumfs
    from bench.configs import base_configs, variant_configs
    from bench.params import TunedParams
    from bench.suites import SUITES
    from bench.variants import VARIANTS
    from ncf_core.data import load, split_for_seed
    from ncf_core.engine.optim import LazyAdam, make_optimizer

    spec = dataclasses.replace(SUITES["smoke"].datasets[0], train=dataclasses.replace(
        SUITES["smoke"].datasets[0].train, epochs=1))
    split = split_for_seed(load("synthetic", task="rating", **dict(spec.options)), "rating", 0)
    cfg, train = variant_configs(spec, VARIANTS["neumf-pre-adam"], TunedParams())
    [model] = pretrained_neumfs(PretrainCache(tmp_path), spec, {0: split}, [0], "cpu", [cfg], True,
                                base_configs(spec, TunedParams()))
    assert model.user.sparse and model.item.embedding.sparse
    opts = make_optimizer(model, dataclasses.replace(train, sparse=True), model.out.weight.device)
    assert any(isinstance(o, LazyAdam) for o in opts)


def test_tost_on_a_hand_made_case():
    from scipy.stats import t as student

    diff = np.array([0.0002, -0.0001, 0.0003, 0.0000, 0.0001])
    n, margin = len(diff), 0.001
    se = diff.std(ddof=1) / np.sqrt(n)
    lower = student.sf((diff.mean() + margin) / se, n - 1)  # H0: diff <= -margin
    upper = student.cdf((diff.mean() - margin) / se, n - 1)  # H0: diff >= +margin
    assert stats.tost(diff, margin) == pytest.approx(max(lower, upper), rel=1e-10)
    assert stats.tost(diff, margin) < 0.05  # equivalent within a thousandth
    assert stats.tost(diff + 0.002, margin) > 0.5  # a real difference is not "equivalent"
    assert stats.tost(np.array([0.003, 0.003]), margin) == 1.0  # no spread, outside the margin


def test_the_verdict_never_names_a_variant_significantly_below_a_baseline():
    """mf has the best mean RMSE of the learned variants but is significantly worse than the
    user+item mean; gmf is worse on average yet not distinguishable from it: gmf is the best."""
    from bench.analysis.report import metric_table, verdict

    base = np.array([0.150, 0.151, 0.149, 0.150, 0.152])
    values = {"mf": base + [0.010, 0.011, 0.009, 0.010, 0.012],
              "gmf": base + [0.03, -0.01, 0.04, -0.02, 0.025], "baseline-user-item-mean": base}
    frame = pd.DataFrame([{"dataset": "d", "task": "rating", "variant": v, "device": "cpu", "seed": s,
                           "status": "ok", "rmse": x} for v, xs in values.items() for s, x in enumerate(xs)])
    sig = stats.significance(frame, ["rmse"])
    table, best = metric_table(frame, ["rmse"], sig)
    assert frame[frame["variant"] == "mf"]["rmse"].mean() < frame[frame["variant"] == "gmf"]["rmse"].mean()
    assert best["rmse"] == "gmf"
    assert "✗ significantly below baseline-user-item-mean" in table.splitlines()[2]  # the mf row
    assert "not distinguishable from baseline-user-item-mean" in table.splitlines()[3]
    assert "**gmf**" in verdict("d", "rmse", best["rmse"], sig)
    alone = frame[frame["variant"] != "gmf"]
    _, best = metric_table(alone, ["rmse"], stats.significance(alone, ["rmse"]))
    assert best["rmse"] is None and "no variant can be called best" in verdict("d", "rmse", None, sig)


def test_smallest_reachable_p_values():
    floor = stats.smallest_p(5, 6, 21)
    assert floor["wilcoxon"] == pytest.approx(0.0625)
    assert floor["wilcoxon_holm"] == 1.0
    assert floor["friedman"] == pytest.approx(sps.chi2.sf(25, 5))
    assert stats.smallest_p(5, 6, 21)["wilcoxon"] == pytest.approx(sps.wilcoxon([1, 2, 3, 4, 5]).pvalue)


def test_refit_trains_on_exactly_train_and_validation_for_the_chosen_epochs(tmp_path):
    from bench.run.datasets import spec_for
    from bench.suites import SUITES
    from ncf_core.data import load, split_for_seed
    from ncf_core.data.splits import refit_split
    from ncf_core.engine.seeding import seeded_model
    from ncf_core.engine.train import fit
    from ncf_core.evaluate import Evaluator

    out = tmp_path / "run"
    assert main(["run", "--suite", "smoke", "--datasets", "synthetic", "--variants", "gmf", "--seeds", "2",
                 "--epochs", "3", "--refit", "--out", str(out)]) == 0
    spec = spec_for("synthetic", SUITES["smoke"])
    data = load("synthetic", task="rating", **dict(spec.options))
    for record in (r for r in TrialStore(out).records() if r["variant"] == "gmf"):
        split = split_for_seed(data, "rating", record["seed"])
        whole = refit_split(split)
        assert set(whole.train.keys()) == set(split.train.keys()) | set(split.valid.keys())
        assert len(whole.train) == len(split.train) + len(split.valid) == record["refit"]["train_rows"]
        assert not set(whole.train.keys()) & set(split.test.keys())
        assert record["refit"]["epochs"] == record["best_epoch"] and record["config"]["data"]["refit"]
        import dataclasses

        model = seeded_model("gmf", spec.model, whole, record["seed"])
        cfg = dataclasses.replace(spec.train, epochs=record["best_epoch"])
        history = fit(model, whole, cfg, seed=record["seed"], select=False)
        assert len(history.epochs) == record["best_epoch"]
        assert all(math.isnan(e.valid_metric) for e in history.epochs)  # validation never read
        expected = Evaluator(split, "test", "cpu").evaluate(model).metrics
        assert record["metrics"] == pytest.approx(expected, rel=1e-4)


def test_average_ranks_and_critical_difference_by_hand():
    """Demšar (2006): rank 1 = best per block, ties averaged; CD = q_0.05 * sqrt(k(k+1) / 6N),
    q_0.05 = 2.343 for k = 3 (his Table 5)."""
    table = pd.DataFrame({"a": [0.30, 0.31, 0.29, 0.30], "b": [0.20, 0.25, 0.29, 0.10],
                          "c": [0.10, 0.05, 0.01, 0.20]})  # a higher-is-better metric
    ra = stats.rank_analysis(table, "ndcg@10")
    assert ra["ranks"].to_dict() == pytest.approx({"a": (1 + 1 + 1.5 + 1) / 4, "b": (2 + 2 + 1.5 + 3) / 4,
                                                   "c": (3 + 3 + 3 + 2) / 4})
    assert ra["cd"] == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 4)), rel=1e-3)
    lower = stats.rank_analysis(table, "rmse")  # lower is better: the order turns round
    assert list(lower["ranks"].index) == ["c", "b", "a"]
    assert ra["pvalues"].loc["a", "c"] == pytest.approx(ra["pvalues"].loc["c", "a"]) and ra["pvalues"].loc["a", "c"] < 1


def test_the_ncf_files_as_fetched_run_by_name(tmp_path):
    prefix = _ncf_prefix(tmp_path / "data" / "ncf", 3)
    for path in prefix.parent.iterdir():
        path.rename(path.with_name(path.name.replace("p.", "ml-1m.", 1)))
    out = tmp_path / "run"
    assert main(["run", "--suite", "full", "--datasets", "ncf-ml-1m", "--data-dir", str(tmp_path / "data"),
                 "--variants", "mf", "--seeds", "1", "--epochs", "1", "--devices", "cpu", "--out", str(out)]) == 0
    record = next(r for r in TrialStore(out).records() if r["variant"] == "mf")
    assert record["dataset"] == "ncf-ml-1m" and record["config"]["model"]["n_factors"] == 64
    assert record["config"]["data"]["refit"] and record["config"]["data"]["n_eval_negatives"] == 99


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


def test_latex_tables_hold_the_trials_means_the_best_in_bold_and_holm_stars(smoke_run, tmp_path):
    """Recomputed from trials.csv and significance.csv; compiled where pdflatex is installed."""
    import re
    import shutil

    tex = (smoke_run / "report" / "tables.tex").read_text()
    trials = pd.read_csv(smoke_run / "report" / "trials.csv")
    sig = pd.read_csv(smoke_run / "report" / "significance.csv")
    tables = re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, re.S)
    assert len(tables) == 3  # ranking, rating, and the primary metric across them
    for table in tables:
        assert table.count("\\toprule") == table.count("\\midrule") == table.count("\\bottomrule") == 1
        body = table.split("\\toprule")[1].split("\\bottomrule")[0].replace("\\midrule", "")
        rows = [r for r in body.split("\\\\") if r.strip()]
        assert len({r.count("&") for r in rows}) == 1 and "_" not in re.sub(r"\\_", "", body)
    ranking = next(t for t in tables if "(ranking, cpu)" in t)
    header = ranking.split("\\toprule")[1].split("\\\\")[0]
    metric = "hr@10"
    column = [c.strip().replace("\\_", "_") for c in header.split("&")].index(metric)
    cells = {}
    for row in ranking.split("\\midrule")[1].split("\\bottomrule")[0].split("\\\\")[:-1]:
        parts = [p.strip() for p in row.split("&")]
        cells[parts[0].replace("\\_", "_")] = parts[column]
    ok = trials[(trials["task"] == "ranking") & (trials["status"] == "ok")]
    means = ok.groupby("variant")[metric].mean()
    best = means.idxmax()
    for variant, cell in cells.items():
        values = ok.loc[ok["variant"] == variant, metric]
        assert f"{values.mean():.4f} $\\pm$ {values.std(ddof=1):.4f}" in cell, variant
        assert cell.startswith("\\textbf{") == (variant == best), variant
        pair = sig[(sig["task"] == "ranking") & (sig["metric"] == metric)
                   & (((sig["variant_a"] == variant) & (sig["variant_b"] == best))
                      | ((sig["variant_a"] == best) & (sig["variant_b"] == variant)))]
        starred = bool(len(pair)) and pair["holm_p"].iloc[0] < 0.05
        assert cell.endswith("$^{*}$") == starred, variant
    if shutil.which("pdflatex"):
        doc = tmp_path / "t.tex"
        doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + tex + "\\end{document}\n")
        res = subprocess.run(["pdflatex", "-interaction=nonstopmode", doc.name], cwd=tmp_path, capture_output=True)
        assert res.returncode == 0, res.stdout[-2000:]


def test_a_baseline_with_the_better_mean_is_bolded_and_named_not_the_variant_it_is_level_with():
    """gmf is the best learned variant, but the user+item mean does better on average (not
    significantly): the table bolds the baseline, and gmf's note names it."""
    from bench.analysis.report import metric_table

    base = np.array([0.150, 0.151, 0.149, 0.150, 0.152])
    values = {"gmf": base + [0.004, -0.003, 0.005, -0.002, 0.001], "baseline-user-item-mean": base}
    frame = pd.DataFrame([{"dataset": "d", "task": "rating", "variant": v, "device": "cpu", "seed": s,
                           "status": "ok", "rmse": x} for v, xs in values.items() for s, x in enumerate(xs)])
    table, best = metric_table(frame, ["rmse"], stats.significance(frame, ["rmse"]))
    rows = table.splitlines()
    assert best["rmse"] == "gmf" and "**" not in rows[2] and "**" in rows[3]
    assert rows[2].rstrip(" |").endswith("not distinguishable from baseline-user-item-mean")


def test_the_summary_says_why_a_t_test_and_the_cd_diagram_can_disagree_and_what_holm_covers(smoke_run):
    summary = (smoke_run / "report" / "summary.md").read_text()
    assert "a pair can be significant by t and still be linked in the diagram" in summary
    assert "Holm's family: the pairs with an NCF variant in them" in summary
    assert "Cells: mean ± sample standard deviation over the n seeds" in summary


def test_full_hit_rate_is_not_reported_twice_under_leave_one_out(smoke_run):
    """One held-out item per user makes full-ranking HR@10 and Recall@10 the same number."""
    trials = pd.read_csv(smoke_run / "report" / "trials.csv")
    ranking = trials[trials["task"] == "ranking"]
    assert ranking["full_hr@10"].equals(ranking["full_recall@10"])  # stored, as measured
    sig = pd.read_csv(smoke_run / "report" / "significance.csv")
    assert "full_hr@10" not in set(sig["metric"]) and "full_recall@10" in set(sig["metric"])
    assert "full\\_hr@10" not in (smoke_run / "report" / "tables.tex").read_text()


def test_a_floor_baseline_far_off_does_not_set_the_metric_plots_scale():
    from bench.analysis.plots import y_range

    values = {"mf": np.array([0.40, 0.42]), "gmf": np.array([0.41, 0.43]), "baseline-mean": np.array([0.05, 0.05]),
              "ease": np.array([0.44])}
    low, high = y_range(values)
    assert 0.38 < low < 0.40 and 0.44 < high < 0.46  # the variants and EASE fill the axis
    assert y_range({"baseline-mean": np.array([0.1])}) is None


def test_a_new_model_is_its_file_and_two_registry_lines(tmp_path, monkeypatch):
    """A model registered in ``MODELS`` and given a ``Variant`` runs through the plan, its probe and a run
    (in this process: spawned workers would not see a registration made by a test)."""
    from bench import variants
    from ncf_core import models
    from ncf_core.models.mf import MF

    class Toy(MF):
        """What a new model's file holds (here MF under another name)."""

    monkeypatch.setitem(models.MODELS, "toy", Toy)
    monkeypatch.setitem(variants.VARIANTS, "toy", variants.Variant("toy", "toy"))
    flags = ["run", "--suite", "smoke", "--variants", "toy,mf", "--seeds", "2", "--epochs", "1", "--jobs", "1",
             "--out", str(tmp_path / "run")]
    assert main([*flags, "--plan"]) == 0
    assert main(flags) == 0
    trials = pd.read_csv(tmp_path / "run" / "report" / "trials.csv")
    toy = trials[trials["variant"] == "toy"]
    assert len(toy) == 4 and (toy["status"] == "ok").all()  # two seeds, both tasks
    mf = trials[trials["variant"] == "mf"].set_index(["task", "seed"])["rmse"]
    assert toy.set_index(["task", "seed"])["rmse"].equals(mf)  # the same model, trained alike


def test_the_terminal_line_of_a_ranking_trial_leads_with_the_verdicts_metric():
    from bench.run.console import one_line

    record = {"dataset": "ml-100k", "task": "ranking", "variant": "mf", "device": "cpu", "seed": 0, "status": "ok",
              "metrics": {"hr@10": 0.61, "ndcg@10": 0.35, "full_ndcg@10": 0.071, "full_recall@10": 0.13},
              "wall_seconds": 2.0, "train_samples_per_s": 1000.0}
    assert "full_ndcg@10=0.0710  hr@10=0.6100  ndcg@10=0.3500  (2.0s" in one_line(record)


def test_throughput_measured_beside_other_work_is_flagged():
    from bench.analysis.throughput import throughput_lines, throughput_table

    def frame(load: float) -> pd.DataFrame:
        return pd.DataFrame([{"dataset": "d", "task": "ranking", "variant": "mf", "device": "cpu", "seed": s,
                              "status": "ok", "train_samples_per_s": 1000.0 + s, "infer_samples_per_s": 5e4,
                              "train_seconds": 2.0, "stacked_seeds": 1, "threads": 1, "jobs": 2,
                              "load_average": load} for s in range(3)])

    assert not any("beside other work" in line for line in throughput_lines(throughput_table(frame(2.2))))
    flagged = [line for line in throughput_lines(throughput_table(frame(4.5))) if "beside other work" in line]
    assert flagged == ["> **Warning:** 1 row(s) were measured beside other work: the 1-minute load average reached "
                       "4.5 where this run's own threads × jobs were 1 × 2; their speeds say little about this "
                       "machine."]


def test_a_variant_significantly_above_a_baseline_says_so_not_a_blank_note():
    from bench.analysis.report import metric_table

    base = np.array([0.150, 0.151, 0.149, 0.150, 0.152])
    values = {"mf": base - [0.010, 0.011, 0.009, 0.010, 0.012], "baseline-mean": base}
    frame = pd.DataFrame([{"dataset": "d", "task": "rating", "variant": v, "device": "cpu", "seed": s,
                           "status": "ok", "rmse": x} for v, xs in values.items() for s, x in enumerate(xs)])
    table, _ = metric_table(frame, ["rmse"], stats.significance(frame, ["rmse"]))
    assert table.splitlines()[2].rstrip(" |").endswith("significantly above baseline-mean")


def test_two_deterministic_methods_are_not_called_indistinguishable():
    """EASE and popularity give the same full-ranking value at every seed: a t-test has no spread, and
    "not distinguishable" would claim what was never tested."""
    from bench.analysis.report import metric_table

    frame = pd.DataFrame([{"dataset": "d", "task": "ranking", "variant": v, "device": "cpu", "seed": s,
                           "status": "ok", "full_ndcg@10": x}
                          for v, x in (("ease", 0.067), ("baseline-popularity", 0.043)) for s in range(5)])
    table, _ = metric_table(frame, ["full_ndcg@10"], stats.significance(frame, ["full_ndcg@10"]))
    assert "not distinguishable" not in table
    assert "the same difference at every seed from baseline-popularity: no per-seed test" in table.splitlines()[2]

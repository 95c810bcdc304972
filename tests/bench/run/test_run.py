"""A run end to end: what a smoke run writes, stacking and pretraining, refits, how data sets
and paths become trials, a diverging trial, and a new model added by its file."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.__main__ import main
from bench.run.store import TrialStore
from tests.conftest import TINY


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


def test_a_studys_default_stack_asks_five_times_on_cuda_and_once_a_trial_on_a_cpu(monkeypatch):
    """On CUDA about the square root of the budget, but no more than a fifth of it: 12 trials in
    stacks of 2 (six rounds of asking, not three stacks of 4), 20 in stacks of 4, under 10 one at a
    time. On a CPU one at a time. A stack asked for is kept, never larger than the budget."""
    from bench.run import plan
    from bench.suites import synthetic
    from ncf_core.data import load

    spec = synthetic("ranking")
    data = load("synthetic", task="ranking", **dict(spec.options))
    monkeypatch.setattr(plan, "memory_budget", lambda devices: 8 << 30)  # an 8 GiB quarter, GPU or not
    stacks = {n: plan.study_stack(spec, data, n, ("cuda",), None) for n in (3, 9, 10, 12, 20, 25, 50, 400)}
    assert stacks == {3: 1, 9: 1, 10: 2, 12: 2, 20: 4, 25: 5, 50: 8, 400: 16}
    assert all(n // k >= plan.MIN_ROUNDS for n, k in stacks.items() if k > 1)
    assert {plan.study_stack(spec, data, n, ("cpu", "cuda"), None) for n in (3, 12, 400)} == {1}
    assert (plan.study_stack(spec, data, 12, ("cpu",), 4), plan.study_stack(spec, data, 3, ("cpu",), 4)) == (4, 3)


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


def test_a_sparse_pretrained_neumf_really_has_sparse_embeddings(tmp_path):
    """Before, `sparse` was recorded but the pretrained NeuMF kept dense tables and dense Adam."""
    import dataclasses

    from bench.compute.pretrain import PretrainCache, pretrained_neumfs
    from bench.configs import resolve
    from bench.params import TunedParams
    from bench.suites import SUITES
    from bench.variants import VARIANTS
    from ncf_core.data import load, split_for_seed
    from ncf_core.engine.optim import LazyAdam, make_optimizer

    spec = dataclasses.replace(SUITES["smoke"].datasets[0], train=dataclasses.replace(
        SUITES["smoke"].datasets[0].train, epochs=1))
    split = split_for_seed(load("synthetic", task="rating", **dict(spec.options)), "rating", 0)
    resolved = resolve(spec, VARIANTS["neumf-pre-adam"], TunedParams())
    [model] = pretrained_neumfs(PretrainCache(tmp_path), spec, {0: split}, [0], "cpu", [resolved.model], True,
                                resolved.bases)
    assert model.user.sparse and model.item.embedding.sparse
    opts = make_optimizer(model, dataclasses.replace(resolved.train, sparse=True), model.out.weight.device)
    assert any(isinstance(o, LazyAdam) for o in opts)


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


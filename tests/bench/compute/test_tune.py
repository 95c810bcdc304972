"""Optuna studies: pruning, resumable shared storage, best params feeding bench run, no test reads."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import optuna
import pytest

from bench.__main__ import main
from bench.compute.study import ask_member, foreseen_trials
from bench.search import STRUCTURAL
from bench.suites import synthetic
from bench.variants import VARIANTS
from ncf_core.data import load, split_for_seed
from tests.conftest import ROOT, stale_trial_failed


def test_study_prunes_and_best_params_feed_bench_run(tmp_path):
    db = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = tmp_path / "tune"
    assert main(["tune", "--dataset", "synthetic", "--variant", "neumf", "--trials", "12",
                 "--sampler-seed", "1", "--storage", db, "--out", str(out)]) == 0
    study = optuna.load_study(study_name="synthetic-rating-neumf", storage=db)
    states = [t.state for t in study.trials]
    assert len(states) == 12 and optuna.trial.TrialState.PRUNED in states
    best = json.loads((out / "best_params.json").read_text())
    assert best["variants"]["neumf"]["train"]["lr"] == pytest.approx(study.best_params["lr"])
    assert {"rmse", "mae", "r2"} <= set(best["test_metrics"])
    assert "importance" in (out / "tune.md").read_text()
    run = tmp_path / "run"
    assert main(["run", "--suite", "smoke", "--variants", "neumf", "--seeds", "1", "--epochs", "1",
                 "--params", str(out / "best_params.json"), "--out", str(run)]) == 0
    records = [json.loads(x) for x in (run / "trials.jsonl").read_text().splitlines()]
    rating = next(r for r in records if r["variant"] == "neumf" and r["task"] == "rating")
    ranking = next(r for r in records if r["variant"] == "neumf" and r["task"] == "ranking")
    assert rating["config"]["train"]["lr"] == pytest.approx(study.best_params["lr"])
    assert ranking["config"]["train"]["lr"] != pytest.approx(study.best_params["lr"])  # tuned for rating only


def test_two_workers_share_one_sqlite_study(tmp_path):
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    cmd = [sys.executable, "-m", "bench", "tune", "--dataset", "synthetic", "--variant", "gmf",
           "--trials", "4", "--epochs", "2", "--storage", db, "--study", "shared"]
    workers = [subprocess.Popen([*cmd, "--sampler-seed", str(s), "--out", str(tmp_path / f"w{s}")],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for s in (1, 2)]
    outputs = [w.communicate(timeout=300)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    numbers = [t.number for t in optuna.load_study(study_name="shared", storage=db).trials]
    assert sorted(numbers) == list(range(8))


@pytest.mark.parametrize("variant", ["gmf", "neumf-pre-sgd"])
def test_a_trial_never_reads_the_test_split(variant):
    from bench.compute.pretrain import PretrainCache
    from bench.compute.study import Trials
    from bench.params import TunedParams

    spec = synthetic("rating")
    data = load("synthetic", task="rating", **dict(spec.options))
    split = split_for_seed(data, "rating", 0)
    test = split.test
    poisoned = dataclasses.replace(split, test=dataclasses.replace(
        test, target=np.full_like(test.target, np.nan), items=np.full_like(test.items, 10**9)))
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=2))
    params = Trials(spec, VARIANTS[variant], split, "cpu", TunedParams(), PretrainCache()).params(
        optuna.trial.FixedTrial({"lr": 3e-3, "batch_size": 256, "weight_decay": 1e-6, "n_factors": 8,
                                 "momentum": 0.5, "alpha": 0.3}))

    def value(s):
        [history] = Trials(spec, VARIANTS[variant], s, "cpu", TunedParams(), PretrainCache()).train([params])
        return history.best_value

    assert value(poisoned) == value(split)


def test_a_killed_workers_trial_is_failed_and_retried_not_left_running(tmp_path):
    """Optuna's heartbeat in a shared study: a worker killed mid-trial (here at its second epoch)
    stops beating; once it is stale the next worker marks its trial FAIL and runs its parameters again."""
    import os

    db = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = [sys.executable, "-m", "bench", "tune", "--dataset", "synthetic", "--variant", "mf", "--storage", db,
           "--study", "s", "--heartbeat", "1", "--grace", "1", "--out", str(tmp_path / "o")]
    victim = subprocess.run([*cmd, "--trials", "1", "--epochs", "5"], cwd=ROOT, capture_output=True,
                            env={**os.environ, "BENCH_KILL_AT": "study-epoch:2"}, timeout=300)
    assert victim.returncode == -9
    running = stale_trial_failed("s", db)
    res = subprocess.run([*cmd, "--trials", "1", "--epochs", "1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    trials = optuna.load_study(study_name="s", storage=db).trials
    killed = trials[running.number]
    assert killed.state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retried and retried[0].params == killed.params
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert "0 running" in (tmp_path / "o" / "tune.md").read_text()


def test_the_study_lives_in_the_out_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "elsewhere"
    assert main(["tune", "--dataset", "synthetic", "--variant", "mf", "--trials", "1", "--epochs", "1",
                 "--out", str(out)]) == 0
    assert (out / "studies.db").is_file() and not (tmp_path / "results").exists()
    assert json.loads((out / "best_params.json").read_text())["storage"] == f"sqlite:///{out / 'studies.db'}"


def test_a_tuned_run_gives_every_variant_the_same_budget_and_neumf_the_tuned_bases(tmp_path):
    from bench.run.store import TrialStore

    out = tmp_path / "run"
    argv = ["run", "--suite", "smoke", "--datasets", "synthetic", "--tune", "3", "--tune-stack", "2", "--seeds", "2",
            "--epochs", "2", "--variants", "mf,gmf,mlp,neumf-pre-adam", "--out", str(out)]
    assert main(argv) == 0
    db = f"sqlite:///{out / 'tuning' / 'studies.db'}"
    counts = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(db)}
    assert counts == {f"synthetic-rating-{v}": 3 for v in ("mf", "gmf", "mlp", "neumf-pre-adam")}
    manifest = json.loads((out / "manifest.json").read_text())["tuning"]
    assert manifest["budget"] == 3 and set(manifest["studies"]) == set(counts)
    best = {k.removeprefix("synthetic-rating-"): v["best"] for k, v in manifest["studies"].items()}
    records = {(r["variant"], r["seed"]): r for r in TrialStore(out).records()}
    neumf = records[("neumf-pre-adam", 0)]["config"]
    assert neumf["model"]["n_factors"] == best["gmf"]["model"]["n_factors"]
    assert neumf["model"]["mlp_layers"] == list(best["mlp"]["model"]["mlp_layers"])
    assert neumf["model"]["alpha"] == pytest.approx(best["neumf-pre-adam"]["model"]["alpha"])
    assert records[("mf", 1)]["config"]["train"]["lr"] == pytest.approx(best["mf"]["train"]["lr"])
    summary = (out / "report" / "summary.md").read_text()
    assert "every variant had the same budget — 3 Optuna trials" in summary
    assert "TPE never left its random start-up" in summary and "each study was a random search." in summary
    assert (out / "report" / "tuning-synthetic-rating.png").is_file()  # best so far, by trial and wall time
    chosen = summary.split("Settings each study chose")[1].split("\n\n")[1].splitlines()[2:]
    assert len(chosen) == len(counts)
    tried: dict[str, int] = {}
    for row in chosen:  # the winner's settings, as the study database holds them
        variant = row.split("|")[1].strip()
        winner = optuna.load_study(study_name=f"synthetic-rating-{variant}", storage=db).best_trial
        assert f"{winner.value:.5f} (trial {winner.number})" in row
        assert all(f"{k} = " in row for k in winner.params), row
        trials = optuna.load_study(study_name=f"synthetic-rating-{variant}", storage=db).trials
        structures = {tuple(t.params.get(k) for k in STRUCTURAL) for t in trials}
        assert row.split("|")[3].strip() == str(len(structures))
        tried[variant] = len(structures)
    # the budget line says it too: equal trials are not equal structures
    assert manifest["stack"]["synthetic"] == 2  # as asked (by default 3 trials run one at a time)
    variants = ("mf", "gmf", "mlp", "neumf-pre-adam")
    assert ("stacked or not; the studies tried " + ", ".join(f"{v} {tried[v]}" for v in variants)
            + " distinct structures in their 3 trials.") in summary
    # the plan knew every trial's settings before anything trained (TPE's random start-up)
    for variant in counts:
        trials = optuna.load_study(study_name=variant, storage=db).trials
        seen = foreseen_trials(variant.removeprefix("synthetic-rating-"), "rating", "ncf", 3,
                               manifest["stack"]["synthetic"])
        assert [t.user_attrs["config"] for t in trials] == json.loads(json.dumps(seen, default=list))
    # resuming the same command reruns nothing: studies full, trials stored, settings equal
    before = (out / "trials.jsonl").read_text()
    assert main(argv) == 0
    assert (out / "trials.jsonl").read_text() == before


def test_the_pruner_spares_the_warm_up_epochs_it_states():
    """Epochs count from 1: with one warm-up epoch a trial may be pruned at epoch 2, never at 1."""
    from bench.compute.pruning import make_pruner
    from bench.search import PRUNERS, WARMUP_EPOCHS

    assert (WARMUP_EPOCHS, PRUNERS["median"]) == (1, "median (3 start-up trials, 1 warm-up epoch)")
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median"))
    for _ in range(3):  # the start-up trials: 0.5 at every epoch
        study.add_trial(optuna.trial.create_trial(value=0.5, intermediate_values={1: 0.5, 2: 0.5, 3: 0.5}))
    trial = study.ask()
    trial.report(0.1, 1)
    assert not trial.should_prune()  # far below the median, but in its warm-up epoch
    trial.report(0.1, 2)
    assert trial.should_prune()


@pytest.mark.parametrize("stack", [1, 4])
def test_the_trials_drawn_before_tpe_learns_are_foreseen_whatever_the_values(stack):
    """Two studies told opposite values draw the same settings until TPE_STARTUP trials have
    finished, and those are the plan's foreseen ones; after that the values move the draws. Each
    trial draws all of its settings: a stack's trials draw what one at a time draws."""
    from bench.search import STRUCTURAL, TPE_STARTUP, search_space

    budget = TPE_STARTUP + 2 * stack
    seen = foreseen_trials("gmf", "rating", "ncf", budget, stack)
    drawn = []
    for sign in (1, -1):
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
        out: list[dict] = []
        while len(out) < budget:
            trials = []
            for _ in range(min(stack, budget - len(out))):
                trial = ask_member(study, 0)
                out.append(search_space(trial, VARIANTS["gmf"], "rating"))
                trials.append(trial)
            for trial in trials:
                study.tell(trial, sign * trial.params["lr"])
        drawn.append(out)
    known = sum(s is not None for s in seen)
    assert known == TPE_STARTUP + (-TPE_STARTUP % stack) and seen[known:] == [None] * (budget - known)
    assert drawn[0][:known] == drawn[1][:known] == seen[:known]
    assert drawn[0][known:] != drawn[1][known:]
    alone = foreseen_trials("gmf", "rating", "ncf", TPE_STARTUP, 1)
    assert seen[:TPE_STARTUP] == alone
    assert len({tuple(t["train"][k] for k in STRUCTURAL if k in t["train"]) for t in alone[:4]}) > 1


def test_halving_counts_the_judged_member_once():
    """Four trials finished at rung 0 with 1, 2, 3, 4 (maximised); a member at 3.5 is one of five,
    of whom 5 // 3 = 1 goes on: the 4. Counted twice (six values) it would be promoted."""
    from optuna.trial import TrialState, create_trial

    from bench.compute.pruning import Member, PrunerView, fresh, make_pruner

    study = optuna.create_study(direction="maximize")
    history = [create_trial(value=v, intermediate_values={1: v}, system_attrs={"completed_rung_0": v})
               for v in (1.0, 2.0, 3.0, 4.0)]
    member = Member(None, fresh(create_trial(state=TrialState.RUNNING)), {})
    member.frozen.intermediate_values[1] = 3.5
    view = PrunerView(study, history, [member], make_pruner("halving"))
    assert view.judge(member)
    assert member.frozen.system_attrs == {"completed_rung_0": 3.5}  # its rung marked, for its next epochs


def test_the_summary_says_when_a_budget_never_leaves_tpes_random_start_up():
    """TPE draws at random until 10 trials have finished, and a stack is asked when the one before it
    has finished: one at a time, 10 trials are a random search and 11 are not; 4 at a time, stacks
    asked after 0, 4 and 8 trials make 12 a random search, and the 13th is TPE's."""
    from bench.analysis.budget import budget_lines

    def random_search(budget: int, stack: int) -> bool:
        tuning = {"budget": budget, "sampler": "TPE, seed 0 (trial n: seed (0, n))", "pruner": "halving",
                  "split_seed": 1, "stack": {"d": stack}}
        records = [{"dataset": "d", "task": "ranking", "variant": v, "config": {"tuning": tuning}}
                   for v in ("mf", "gmf")]
        line = budget_lines(records)[("d", "ranking")]
        assert f"same budget — {budget} Optuna trials" in line
        assert line.endswith("the verdict reads full_ndcg@10 (full ranking); how far the two orders agree is "
                             "measured on the test split below.")  # selection and verdict metrics told apart
        return (f"With {budget} trials, {stack} at a time, TPE never left its random start-up (it draws at random "
                "until 10 trials have finished): each study was a random search.") in line

    assert [random_search(b, 1) for b in (10, 11)] == [True, False]
    assert [random_search(b, 4) for b in (10, 12, 13)] == [True, True, False]


def test_bench_tune_stacks_as_a_tuned_run_does_and_says_what_it_searched(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["tune", "--dataset", "synthetic", "--variant", "gmf", "--trials", "10", "--epochs", "1",
                 "--out", str(out)]) == 0
    payload = json.loads((out / "best_params.json").read_text())
    # a CPU study runs one at a time, as a tuned run's does (plan.study_stack); no evaluation seed
    assert payload["stack"] == 1 and payload["split_seed"] not in range(100)
    assert "10/10 trials 100%" in capsys.readouterr().err  # the bar, with its time left
    md = (out / "tune.md").read_text()
    space = md.split("## Search space")[1]
    assert "| lr | float in [" in space and "log scale" in space and "| batch_size | one of " in space


def test_a_params_file_for_one_variant_makes_the_summary_say_unequal_not_untuned(tmp_path):
    """bench tune's MF, then a run of MF and GMF with its file: MF ran tuned, GMF at defaults; the
    summary named neither and said every variant ran at the paper's defaults."""
    tuned = tmp_path / "t"
    assert main(["tune", "--dataset", "synthetic", "--variant", "mf", "--trials", "2", "--epochs", "1",
                 "--out", str(tuned)]) == 0
    out = tmp_path / "run"
    assert main(["run", "--suite", "smoke", "--datasets", "synthetic", "--variants", "mf,gmf", "--seeds", "2",
                 "--epochs", "1", "--params", str(tuned / "best_params.json"), "--out", str(out)]) == 0
    summary = (out / "report" / "summary.md").read_text()
    section = summary.split("## synthetic — rating — cpu")[1].split("## ")[0]
    assert "Tuning: none" not in section
    assert (f"Tuning: **unequal** — mf: settings from params file {tuned / 'best_params.json'}, tuned with 2 "
            "trials; gmf: the protocol's defaults.") in section
    assert "this compares settings as much as models" in section

"""The plan's price of a job: an epoch's cost from a setting's shapes, fitted on a few timed
settings; the stack sizes halving leaves; a thinned stack's seconds between those probed."""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import pytest

from bench.configs import resolve
from bench.estimate.eta import TimeLeft
from bench.estimate.probe import _thinned, fit_epoch_cost, shape_costs
from bench.estimate.schedule import makespan
from bench.estimate.work import study_rungs
from bench.params import TunedParams
from bench.run.plan import JobKey
from bench.run.pool import Job
from bench.suites import ncf_ranking
from bench.variants import VARIANTS


def _draw(optimizer: str) -> dict:
    return {"model": {"n_factors": 16}, "train": {"optimizer": optimizer, "batch_size": 128, "n_negatives": 3}}


def test_an_epochs_cost_counts_the_rows_dense_adam_moves_and_plain_sgd_does_not(tiny_ranking):
    """MF at 16 factors: tables of (users + items) x 16, two bias tables, a global bias. Dense Adam
    moves every weight each step; plain SGD only the rows of the batch (counted with the examples)."""
    spec = ncf_ranking("ml-1m", search="rendle")
    users, items = tiny_ranking.n_users, tiny_ranking.n_items
    weights = (users + items) * 16 + users + items + 1
    examples = len(tiny_ranking.train) * (1 + 3)
    steps = examples / 128
    per_example = 16 + 16 + 1 + 1 + 1  # a row of each table, and the global bias
    mf = resolve(spec, VARIANTS["mf"], TunedParams())
    adam, sgd = shape_costs(spec, tiny_ranking, mf, _draw("adam")), shape_costs(spec, tiny_ranking, mf, _draw("sgd"))
    assert adam == pytest.approx([steps, steps * weights, examples * per_example])
    assert sgd == pytest.approx([steps, steps * 1, examples * per_example])


def test_the_fit_recovers_a_cost_law_and_prices_settings_it_did_not_time():
    rng = np.random.default_rng(0)
    law = np.array([2e-4, 3e-9, 5e-10])  # per step, per weight moved, per unit of example work
    timed = [rng.uniform([1e3, 1e6, 1e7], [1e5, 1e10, 1e9]) for _ in range(6)]
    others = [rng.uniform([1e3, 1e6, 1e7], [1e5, 1e10, 1e9]) for _ in range(50)]
    seconds = np.array([x @ law for x in timed])
    assert fit_epoch_cost(timed, seconds, others) == pytest.approx([x @ law for x in others], rel=1e-6)
    # noisy timings: still within the noise, never a negative cost
    noisy = seconds * rng.uniform(0.9, 1.1, len(seconds))
    fitted = fit_epoch_cost(timed, noisy, others)
    assert (fitted > 0).all() and np.median(np.abs(fitted / [x @ law for x in others] - 1)) < 0.15


def test_halving_thins_each_stack_and_a_thinned_stack_costs_more_a_model():
    """Two trials, a stack of 2, 3 epochs: both train epoch 1 together; the first goes on, the second
    too half the time, so epochs 2-3 train 1.5 models (2 * 1.5) in stacks of 2 or 1 (weighted by
    the models they train: (2 * 2 + 1 * 1) / 3 on average over the halves)."""
    rungs = np.array(study_rungs("halving", 2, 2, 3))
    assert rungs == pytest.approx(np.array([(2, 2), (3, 5 / 3)]), rel=0.05)
    assert np.array(study_rungs("median", 10, 4, 20)) == pytest.approx(np.array([(0.7 * 10 * 20, 4)]))
    seconds = {1: 4.0, 4: 1.0}  # a model alone 4 s an epoch, in a stack of 4 1 s
    assert [_thinned(seconds, 4, live) for live in (4, 2, 1)] == pytest.approx([1.0, 2.0, 4.0])
    assert _thinned({3: 1.5}, 3, 1.0) == 1.5  # not probed alone: the stack's own


def test_time_left_follows_each_jobs_own_pace():
    """Costs 10, 10, 20 (the plan's rough units) on 2 workers. A job's pace counts from its first
    reported epoch: what came before it (loading, pretrained bases) is not an epoch's cost."""
    left = TimeLeft({"a": 10, "b": 10, "c": 20}, {"a": 4, "b": 10, "c": 5}, workers=2)
    left.start("a", 0.0), left.start("b", 0.0)
    left.epoch("b", 1, 8.0)
    assert left.seconds(9.0) is None  # one report shows no pace yet
    left.epoch("a", 1, 10.0), left.epoch("a", 3, 40.0), left.done("a", 40.0)
    assert left.seconds(40.0) == pytest.approx((10 + 20) * 4 / 2)  # b and c at a's 4 s a unit
    left.epoch("b", 1, 40.0)  # an epoch in the 32 s since its first report: 8 to go, 256 s
    per_unit = (40 + (40 + 256)) / 20  # what a and b have shown: c waits at 16.8 s a unit
    assert left.seconds(40.0) == pytest.approx(max(256, (256 + 20 * per_unit) / 2))
    left.done("b", 200.0), left.start("c", 200.0), left.epoch("c", 1, 210.0), left.epoch("c", 1, 230.0)
    assert left.seconds(230.0) == pytest.approx(3 * 20)  # the last job alone: 3 epochs to go at 20 s


def test_the_plans_wall_time_schedules_jobs_as_the_pool_does():
    """Longest path first, each job at its own seconds whatever runs beside it. On two workers a
    (4 s) and b (10 s) start at once, c (6 s, after a) runs from 4 to 10, d (3 s, after b and c)
    from 10 to 13; on one worker the jobs run one after another."""
    seconds = {"a": 4.0, "b": 10.0, "c": 6.0, "d": 3.0}
    after = {"c": ("a",), "d": ("b", "c")}
    jobs_ = [Job(k, operator.add, after=after.get(k, ()), cost=v) for k, v in seconds.items()]
    assert makespan(jobs_, 2, seconds) == pytest.approx(13)
    assert makespan(jobs_, 1, seconds) == pytest.approx(23)


def test_a_tuned_plan_brackets_each_winners_seeds_and_the_wall_time():
    """A winner is one of its study's trials: its seeds are priced at their mean, and also at the
    cheapest and the costliest structure the probe timed, which must bracket that mean."""
    from bench.run.options import RunOptions
    from bench.run.runner import Runner
    from bench.suites import SUITES

    opts = RunOptions(datasets=("synthetic",), variants=("mf", "mlp"), tune=4, tune_stack=2, seeds=2, epochs=2, jobs=1)
    runner = Runner(SUITES["smoke"], opts, Path("/nonexistent/never-written"), log=lambda m: None)
    runner.load()
    plan, seconds, wall, span, bounds = runner.estimate(lambda m: None)
    units = [k for k in seconds if not k.study and not k.variant.startswith("baseline")]
    assert sorted(span) == sorted(units) and len(units) == 2
    for key in units:
        low, high = span[key]
        assert low <= seconds[key] <= high and low < high, (key, low, seconds[key], high)
    assert bounds["cheapest"] <= wall <= bounds["costliest"]
    assert "unstopped" not in bounds  # no run here has a patience: nothing can stop early
    said = runner.describe(plan, seconds, wall, span, bounds)
    assert "by its winner" in said and "stopped nothing" not in said
    assert "; 9.0 min if early stopping stopped nothing" in runner.describe(plan, seconds, wall, span,
                                                                           {**bounds, "unstopped": 540.0})


def test_if_early_stopping_stopped_nothing_the_plan_counts_every_epoch_its_space_allows():
    """Rendle's MF pins 256 epochs with a patience of 16: the plan expects a run to end 48 epochs in,
    and its bound trains all 256 (a study's first trial always goes on under halving, and each seed
    of the winner). GMF's space has no patience: its work is the same either way."""
    from dataclasses import replace

    from bench.estimate.work import work
    from bench.run.options import RunOptions
    from bench.run.plan import make_plan
    from bench.suites import synthetic
    from ncf_core.data import load

    spec = replace(synthetic("ranking"), search="rendle")
    data = load("synthetic", task="ranking", **dict(spec.options))
    opts = RunOptions(tune=4, tune_stack=2, jobs=1)
    plan = make_plan([(spec, data)], ("cpu",), [0, 1], ("mf", "gmf"), False, set(), 4, opts)
    expected, full = work(plan), work(plan, unstopped=True)
    assert expected.keys() == full.keys()
    for key in expected:
        variant = key.variant
        assert (full[key] == expected[key]) == (variant == "gmf"), key
    assert expected[JobKey("study", 0, "mf")].rungs == study_rungs("halving", 4, 2, 48)
    assert full[JobKey("study", 0, "mf")].rungs == study_rungs("halving", 4, 2, 256)
    assert full[JobKey("study", 0, "mf")].epochs >= 256 + 3  # its first trial, and at least the rest's first epochs
    unit = next(k for k in expected if not k.study and k.variant == "mf")
    assert (expected[unit].epochs, full[unit].epochs) == (2 * 48, 2 * 256)  # two seeds, stacked


def test_a_warm_study_adds_its_winners_training_to_itself_alone():
    """GMF's study also trains its winner for the pretrained NeuMF; MF's, of the same budget, stack
    and epochs, does not, and pricing the plan twice gives the same work (the rungs are shared)."""
    from bench.estimate.work import work
    from bench.run.options import RunOptions
    from bench.run.runner import Runner
    from bench.suites import SUITES

    opts = RunOptions(datasets=("synthetic",), variants=("mf", "gmf", "neumf-pre-adam"), tune=4, tune_stack=2,
                      seeds=1, epochs=2, jobs=1)
    runner = Runner(SUITES["smoke"], opts, Path("/nonexistent/never-written"), log=lambda m: None)
    runner.load()
    plan = runner.make_plan(set())
    first, again = work(plan), work(plan)
    assert first == again
    studies = {key.variant: job.rungs for key, job in first.items() if key.study}
    assert studies["gmf"] == (*studies["mf"], (2, 1.0)) and studies["mf"] == study_rungs("halving", 4, 2, 2)


def test_the_plans_halving_rule_is_optunas():
    """The plan plays halving out with its own few lines (``_promoted``); members judged one by one by
    Optuna's pruner, through the study's view, at one rung, must go on exactly when those say so."""
    import optuna
    from optuna.trial import FrozenTrial, TrialState

    from bench.compute.pruning import Member, PrunerView, fresh, make_pruner
    from bench.estimate.work import _promoted

    rng = np.random.default_rng(1)
    for _ in range(20):
        values = rng.permutation(12).astype(float)
        members = [Member(None, fresh(FrozenTrial(n, TrialState.RUNNING, None, None, None, {}, {}, {}, {}, {}, n)), {})
                   for n in range(len(values))]  # numbered as a storage numbers them
        view = PrunerView(optuna.create_study(direction="maximize"), [], members, make_pruner("halving"))
        rung: list[float] = []
        for member, value in zip(members, values):
            member.frozen.intermediate_values[1] = value
            assert (not view.judge(member)) == _promoted(value, rung)


def test_a_stacks_members_are_priced_at_its_widest_shapes():
    """Members of one stack train padded to its widest member, so the plan prices each at those
    shapes, not at its own (which the sampler drew: the stacks here hold several widths); trials asked
    together with another MLP depth form a stack of their own."""
    from types import SimpleNamespace

    from bench.compute.study import foreseen_trials
    from bench.estimate.probe import study_settings
    from bench.suites import SUITES

    spec = next(s for s in SUITES["smoke"].datasets if s.task == "ranking")
    plan = SimpleNamespace(stacks={spec.label: 4}, budget=8, sampler_seed=0)
    for variant, key in (("gmf", "n_factors"), ("mlp", "mlp_layers")):
        drawn = foreseen_trials(variant, spec.task, spec.search, 8, 4)
        priced, unknown = study_settings(plan, spec, variant)
        assert unknown == 0
        for lo in (0, 4):
            own = [d["model"][key] for d in drawn[lo:lo + 4]]
            assert len(set(map(str, own))) > 1  # the sampler drew several widths for this stack
            for p, mine in zip(priced[lo:lo + 4], own):
                alike = [o for o in own if not isinstance(o, tuple) or len(o) == len(mine)]  # same depth
                widest = max(alike) if not isinstance(mine, tuple) else tuple(max(w) for w in zip(*alike))
                assert p["model"][key] == widest

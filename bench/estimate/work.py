"""What each job of a plan trains, counted before anything trains: its models' epochs per rung of
successive halving, a unit's refit, and examples weighted by each model's cost. The runner orders
the work and moves its progress bar by these; ``--plan`` turns them into seconds (``probe``)."""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench.run.datasets import training_pairs
from bench.run.plan import Plan
from bench.search import HALVING_FACTOR, HALVING_MIN_EPOCHS, pinned_training
from bench.suites import DataSpec
from bench.variants import BASELINE, VARIANTS

# Relative cost of a training example at the paper's shapes (a model not listed: the costliest's; --plan
# measures every model, listed or not) (bench speed, 2-core CPU, batch 256:
# samples/s of GMF over each model's), and how much of a study's epochs pruning leaves.
# A reference baseline's "epoch" is one fit, priced as about two GMF epochs (ml-100k, 2-core CPU: EASE^R,
# ItemKNN and RP3β fit in about one, iALS at 46 factors and 10 iterations in about two); --plan times it.
EXAMPLE_COST = {"mf": 1.2, "gmf": 1.0, "mlp": 2.1, "neumf": 2.5, "reference": 2.0}
# Seconds of one GMF example on one thread at batch 256 (an ML-100K-sized epoch, 462k examples, in
# 0.86 s on a 2-core AMD EPYC, 2026-12-08): turns relative costs into rough seconds where only the
# order of magnitude matters (whether worker processes repay their start).
GMF_EXAMPLE_S = 1.9e-6
EPOCHS_LEFT = {"median": 0.7}
# A refit trains the epochs validation chose, for a run without early stopping most of them: 0.83 of
# them on average over the 10 seeds of two tuned ML-1M runs (the plan assumed half, and came short).
REFIT_SHARE = 0.8
HALVING_PLAYS = 1000  # random orders successive halving is played out over (study_rungs)


def relative_costs(plan: Plan) -> dict[tuple, float]:
    """Examples trained (times a model's cost per example, over a stack's gain): enough to order the
    work and to turn the progress bar's rate into time left, without measuring anything."""
    return {key: sum(e / stack_gain(live) for e, live in job.rungs) * training_pairs(*plan.specs[key.dataset])
            * EXAMPLE_COST.get(job.model, max(EXAMPLE_COST.values())) for key, job in work(plan).items()}


def rough_seconds(costs: dict[tuple, float]) -> float:
    """The relative costs' rough seconds on one thread (``GMF_EXAMPLE_S``)."""
    return sum(costs.values()) * GMF_EXAMPLE_S


def expected_epochs(plan: Plan) -> dict[tuple, float]:
    """Epochs each job is expected to train, summed over its models: what a job's ended epochs
    are counted against to move the progress bar while it runs."""
    return {key: job.epochs for key, job in work(plan).items()}


def stack_gain(size: int) -> float:
    """Throughput of a stack of ``size`` over one model (bench speed: about 2.5x for ten)."""
    return size ** 0.4


@dataclass(frozen=True)
class Work:
    """What a job trains: its models' epochs, in parts trained at one live stack size each (a
    study's stack thins out as halving prunes its members; a unit's seeds train together)."""

    model: str
    size: int  # models stacked at the start
    rungs: tuple[tuple[float, float], ...]  # (epochs summed over the models, models still stacked)
    refit: float = 0.0  # of those epochs, the refit's (it validates nothing)

    @property
    def epochs(self) -> float:
        return sum(e for e, _ in self.rungs)


def work(plan: Plan, unstopped: bool = False) -> dict[tuple, Work]:
    """What each job of the plan trains; ``unstopped``: if early stopping stopped nothing, every run
    with a patience training all its space's epochs (Rendle's MF: 256, where 48 are expected)."""
    out = {}
    for study in plan.studies:
        spec, _ = plan.specs[study.dataset]
        if VARIANTS[study.variant].reference:  # one fit a trial
            out[plan.study_key(study)] = Work("reference", 1, ((float(plan.budget), 1.0),))
            continue
        train_cfg = plan.resolved[study.dataset, study.variant].train
        train_cfg = _pinned(spec, study.variant, train_cfg)
        stack_size = plan.stacks[spec.label]
        rungs = list(study_rungs(plan.pruner, plan.budget, stack_size, _expected_epochs(train_cfg, unstopped)))
        if plan.warms(study.variant):  # its winner, trained once more alone for the pretrained NeuMFs
            rungs.append((_expected_epochs(train_cfg, unstopped), 1.0))
        out[plan.study_key(study)] = Work(VARIANTS[study.variant].model, stack_size, tuple(rungs))
    for unit in plan.units:
        spec, _ = plan.specs[unit.dataset]
        if unit.variant.startswith(BASELINE):
            out[plan.unit_key(unit)] = Work("gmf", 1, ((0.01, 1.0),))
            continue
        if VARIANTS[unit.variant].reference:
            out[plan.unit_key(unit)] = Work("reference", 1, ((float(len(unit.seeds)), 1.0),))
            continue
        train_cfg = plan.resolved[unit.dataset, unit.variant].train
        if plan.budget:  # the tuned winner trains as its space pinned it
            train_cfg = _pinned(spec, unit.variant, train_cfg)
        # the whole group trains, however few of its seeds are pending
        epochs, size = _expected_epochs(train_cfg, unstopped), len(unit.group)
        refit = epochs * REFIT_SHARE * size if spec.refit else 0.0
        rungs = ((epochs * size, float(size)),) + (((refit, float(size)),) if refit else ())
        out[plan.unit_key(unit)] = Work(VARIANTS[unit.variant].model, size, rungs, refit)
    return out


def _pinned(spec: DataSpec, variant: str, train_cfg: Any) -> Any:
    """The training a variant's space pins for every trial; an epoch count set by --epochs stays."""
    pins = pinned_training(VARIANTS[variant], spec.task, spec.search)
    if spec.epochs_fixed:
        pins.pop("epochs", None)
    return replace(train_cfg, **pins)


def study_epochs(pruner: str, budget: int, stack_size: int, epochs: float) -> float:
    """Epochs a study trains, summed over its trials (``study_rungs``)."""
    return sum(e for e, _ in study_rungs(pruner, budget, stack_size, epochs))


@functools.lru_cache(maxsize=256)
def study_rungs(pruner: str, budget: int, stack_size: int, epochs: float) -> tuple[tuple[float, float], ...]:
    """A study's epochs, summed over its trials, per rung, with the models its stacks hold there
    (weighted by the epochs they train). The median pruner leaves about 70 % of them. Successive
    halving is played out as a study runs it (``bench.compute.pruning``): stacks one after another,
    each member judged at each rung (1, 3, 9, ... epochs) in the order asked, against every trial
    that reached the rung before it, for values that keep their order from rung to rung, averaged
    over HALVING_PLAYS random orders. That counts 62 model-epochs a study of quick (20 trials, 5 at
    a time, 10 epochs: 62.0 measured, 744 in 12 studies) and 68 one of ML-1M's (10, 4 at a time, 20
    epochs: 69, 69 and 88 measured, the 88 an MLP whose values reshuffled). A first stack's members
    face few rivals: its first always goes on, and about 2.3 of 5 pass epoch 1."""
    stack_size = min(stack_size, budget)
    if pruner != "halving":
        return ((EPOCHS_LEFT[pruner] * budget * epochs, float(stack_size)),)
    steps = [float(HALVING_MIN_EPOCHS)]
    while steps[-1] < epochs:
        steps.append(steps[-1] * HALVING_FACTOR)
    steps[-1] = float(epochs)
    trained, held = np.zeros(len(steps)), np.zeros(len(steps))
    rng = np.random.default_rng(0)
    plays = min(HALVING_PLAYS, max(10, HALVING_PLAYS * 50 // budget))  # a big study averages within a play
    for _ in range(plays):
        quality, marks = rng.permutation(budget).tolist(), [[] for _ in steps]
        for first in range(0, budget, stack_size):
            live = list(quality[first:first + stack_size])
            for r, step in enumerate(steps):
                span = step - (steps[r - 1] if r else 0)
                trained[r] += len(live) * span
                held[r] += len(live) ** 2 * span
                if step >= epochs:
                    break
                live = [q for q in live if _promoted(q, marks[r])]
    return tuple((float(t / plays), float(h / t)) for t, h in zip(trained, held) if t > 0)


def _promoted(value: float, rung: list[float]) -> bool:
    """Optuna's successive halving: ``value`` joins the values its rung holds and goes on if among
    the best len // factor of them (at least the best). ``rung`` is kept sorted."""
    bisect.insort(rung, value)
    return value >= rung[len(rung) - max(1, len(rung) // HALVING_FACTOR)]


def _expected_epochs(cfg: Any, unstopped: bool = False) -> float:
    """A run with early stopping ends ``patience`` epochs after its best: assume three patiences in
    (ml-100k's MF study in Rendle's space: its two complete trials trained 65 and 19)."""
    return cfg.epochs if cfg.patience is None or unstopped else min(cfg.epochs, 3 * cfg.patience)



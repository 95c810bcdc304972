"""What a run will do, as one dependency graph: every (data set, variant) study of a tuned run, and
the seeded units (a variant's pending seeds of one seed group on one device) that wait for their
study, and for a pretrained NeuMF also for its GMF and MLP. A data set's units start as soon as its
studies end, while other studies still run. Costs are estimated to order the work (longest path
first), to drive the progress bar's time left, and for ``bench run --plan``, which prices them in
seconds (``bench.run.cost``) and prints the plan and its estimated wall time.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench import layout
from bench.compute.references import run_reference_study
from bench.compute.study import StudyJob, StudySettings, run_study
from bench.compute.units import UnitJob, UnitSettings, run_unit
from bench.configs import record, variant_configs
from bench.params import TunedParams
from bench.run.datasets import training_pairs
from bench.run.options import memory_budget
from bench.run.pool import Job
from bench.run.store import trial_key
from bench.search import HALVING_FACTOR, HALVING_MIN_EPOCHS, PRUNERS, TUNE_SEED, pinned_training
from bench.suites import DataSpec
from bench.variants import BASELINE, PRETRAIN_BASES, VARIANTS, chain_rank
from ncf_core.tasks import task_of

# Relative cost of a training example at the paper's shapes (bench speed, 2-core CPU, batch 256:
# samples/s of GMF over each model's), and how much of a study's epochs pruning leaves.
# A reference baseline's "epoch" is one fit, priced as about two GMF epochs (ml-100k, 2-core CPU: EASE^R,
# ItemKNN and RP3β fit in about one, iALS at 46 factors and 10 iterations in about two); --plan times it.
EXAMPLE_COST = {"mf": 1.2, "gmf": 1.0, "mlp": 2.1, "neumf": 2.5, "reference": 2.0}
EPOCHS_LEFT = {"median": 0.7}
# A refit trains the epochs validation chose, for a run without early stopping most of them: 0.83 of
# them on average over the 10 seeds of two tuned ML-1M runs (the plan assumed half, and came short).
REFIT_SHARE = 0.8
STACK_CAP = 16
HALVING_PLAYS = 1000  # random orders successive halving is played out over (study_rungs)


class JobKey(NamedTuple):
    """A job's name in the run's graph: a study, or a unit of seeds."""

    kind: str  # "study" or "unit"
    dataset: int  # index into the plan's data sets
    variant: str
    device: str = ""  # a unit's (a study trains on the run's first device)
    group: int = -1  # a unit's seed group, by its first seed (a key stays small to hash)
    seed: int = -1  # a baseline unit's seed: one unit a seed, so one key each

    @property
    def study(self) -> bool:
        return self.kind == "study"


@dataclass
class Plan:
    specs: list[tuple[DataSpec, Any]]
    devices: tuple[str, ...]
    seeds: list[int]
    variants: tuple[str, ...]
    trials: list[dict[str, Any]]  # every trial of the run (key fields only)
    pending: set[tuple]
    budget: int
    tuning: dict[str, Any] | None  # the tuning protocol every trial's config records
    stack: bool  # seeds (not studies) trained stacked
    pruner: str
    sampler_seed: int
    studies: list[StudyJob] = field(default_factory=list)
    units: list[UnitJob] = field(default_factory=list)
    groups: dict[str, list[int]] = field(default_factory=dict)  # data set -> sizes of its seed groups
    stacks: dict[str, int] = field(default_factory=dict)  # data set -> trials per stack of its studies

    def warms(self, variant: str) -> bool:
        """A GMF or MLP study also trains its winner for the pretrained NeuMFs of the run."""
        return variant in PRETRAIN_BASES and any(VARIANTS[v].pretrained for v in self.variants)

    def study_key(self, study: StudyJob) -> JobKey:
        return JobKey("study", study.dataset, study.variant)

    def unit_key(self, unit: UnitJob) -> JobKey:
        seed = unit.seeds[0] if unit.variant.startswith(BASELINE) else -1
        return JobKey("unit", unit.dataset, unit.variant, unit.device, unit.group[0], seed)


def seed_groups(spec: DataSpec, data: Any, seeds: list[int], devices: tuple[str, ...],
                stacked: bool) -> list[list[int]]:
    """All pending seeds as one stacked group, or as many as fit a quarter of the smallest memory
    among the run's devices (an epoch's pairs cost ~64 bytes a seed: ids, target, their shuffled
    and stacked copies). Without stacking, one seed at a time, so one split is in memory."""
    if not stacked:
        return [[s] for s in seeds]
    size = int(max(1, min(len(seeds), memory_budget(devices) // (64 * training_pairs(spec, data)))))
    return [seeds[k:k + size] for k in range(0, len(seeds), size)]


def study_stack(spec: DataSpec, data: Any, budget: int, devices: tuple[str, ...], requested: int | None) -> int:
    """Trials per stack: ``--tune-stack``, else about the square root of the budget (as many stacks as
    trials per stack: each stack explores one structure, so a stack of the whole budget would try
    one batch size and one shape), capped by what fits a quarter of the smallest memory (a member
    holds its tables, their gradients and Adam's two moments, at the widest shapes searched)."""
    if requested is not None:
        return max(1, min(requested, budget))  # a stack never holds more trials than its study has
    rows = (data.train.n_users + data.train.n_items) if hasattr(data, "train") else (data.n_users + data.n_items)
    member = rows * (192 + 128) * 4 * 4  # the widest searched: MF 192 factors; NeuMF 64 + half a 256 tower
    fits = max(1, memory_budget(devices) // member)
    return int(max(1, min(budget, STACK_CAP, fits, math.ceil(math.sqrt(budget)))))


def make_plan(specs: list[tuple[DataSpec, Any]], devices: tuple[str, ...], seeds: list[int], variants: tuple[str, ...],
              baselines: bool, done: set[tuple], budget: int, opts: Any) -> Plan:
    trials = []
    for spec, _ in specs:
        for seed in seeds:
            for device in devices:
                trials += [record(spec, v, device, seed) for v in variants if VARIANTS[v].applies(spec.task)]
            if baselines:
                trials += [record(spec, f"{BASELINE}{b}", "cpu", seed) for b in task_of(spec.task).baselines]
    pending = {trial_key(t) for t in trials} - done
    tuning = None
    if budget:
        seed = opts.sampler_seed
        tuning = {"budget": budget, "sampler": f"TPE, seed {seed} (trial n: seed ({seed}, n))",
                  "pruner": PRUNERS[opts.pruner], "split_seed": TUNE_SEED}
    plan = Plan(specs, devices, seeds, variants, trials, pending, budget, tuning, opts.stack, opts.pruner,
                opts.sampler_seed)
    order = sorted(variants, key=chain_rank)
    for index, (spec, data) in enumerate(specs):
        if budget:
            plan.stacks[spec.label] = study_stack(spec, data, budget, devices, opts.tune_stack)
            plan.studies += [StudyJob(index, v) for v in order if VARIANTS[v].applies(spec.task)]
        mine = [t for t in trials if (t["dataset"], t["task"]) == (spec.label, spec.task) and trial_key(t) in pending]
        # Groups of all the run's seeds, whatever is stored: a unit trains its whole group (and records
        # its pending seeds), so a resumed run trains each seed in the company it had, bit for bit.
        by_group: dict[int, list[dict]] = {}
        groups = seed_groups(spec, data, seeds, devices, opts.stack)
        group_of = {seed: n for n, g in enumerate(groups) for seed in g}
        for t in mine:
            by_group.setdefault(group_of[t["seed"]], []).append(t)
        groups = [g for n, g in enumerate(groups) if n in by_group]
        if groups:
            plan.groups[spec.label] = [len(g) for g in groups]
        for n, group in ((group_of[g[0]], tuple(g)) for g in groups):  # one tuple a group, shared by its units
            by_unit: dict[tuple, list[int]] = {}
            for t in by_group[n]:
                by_unit.setdefault((t["device"], t["variant"]), []).append(t["seed"])
            for device in devices:
                for name in order:
                    if (device, name) in by_unit:
                        plan.units.append(UnitJob(index, group, device, name, tuple(by_unit[device, name])))
            for t in by_group[n]:
                if t["variant"].startswith(BASELINE):
                    plan.units.append(UnitJob(index, group, "cpu", t["variant"], (t["seed"],)))
    if tuning:
        tuning["stack"] = plan.stacks
    return plan


def jobs(plan: Plan, run_dir: Path, params: TunedParams, jobs_count: int, device: str,
         costs: dict[tuple, float] | None = None) -> list[Job]:
    """The plan's work as jobs for an executor, each listed after what it depends on."""
    out: list[Job] = []
    keys = set()
    folder = str(run_dir / layout.TUNING)
    for study in plan.studies:
        spec = plan.specs[study.dataset][0]
        bases = tuple(plan.study_key(StudyJob(study.dataset, b)) for b in PRETRAIN_BASES
                      if b in plan.variants) if VARIANTS[study.variant].pretrained else ()
        reference = VARIANTS[study.variant].reference  # one trial at a time, nothing to prune
        settings = StudySettings(spec, plan.budget, 1 if reference else plan.stacks[spec.label], folder, device,
                                 "none" if reference else plan.pruner, sampler_seed=plan.sampler_seed,
                                 warm=plan.warms(study.variant))
        key = plan.study_key(study)
        out.append(Job(key, run_reference_study if reference else run_study, (study, settings), bases, study.dataset,
                       f"the {study.variant} study on {spec.label}", (costs or {}).get(key, 1.0), device, local=True))
        keys.add(key)
    checkpoints = str(run_dir / layout.CHECKPOINTS)
    unit_settings = [UnitSettings(spec, params, plan.tuning, plan.stack, jobs_count, checkpoints)
                     for spec, _ in plan.specs]
    for unit in plan.units:
        spec = plan.specs[unit.dataset][0]
        after: list[tuple] = []
        if not unit.variant.startswith(BASELINE):
            variant = VARIANTS[unit.variant]
            tuned = [unit.variant, *(PRETRAIN_BASES if variant.pretrained else ())]
            after += [k for k in (plan.study_key(StudyJob(unit.dataset, v)) for v in tuned) if k in keys]
            if variant.pretrained:
                after += [k for k in (plan.unit_key(UnitJob(unit.dataset, unit.group, unit.device, b, ()))
                                      for b in PRETRAIN_BASES) if k in keys]
        settings = unit_settings[unit.dataset]
        key = plan.unit_key(unit)
        out.append(Job(key, run_unit, (unit, settings), tuple(after), unit.dataset,
                       f"{unit.variant} on {spec.label} ({unit.device}, seeds {list(unit.seeds)})",
                       (costs or {}).get(key, 1.0), unit.device))
        keys.add(key)
    return out


# -- costs ----------------------------------------------------------------------------------------

def relative_costs(plan: Plan, params: TunedParams) -> dict[tuple, float]:
    """Examples trained (times a model's cost per example, over a stack's gain): enough to order the
    work and to turn the progress bar's rate into time left, without measuring anything."""
    return {key: sum(e / stack_gain(live) for e, live in job.rungs) * training_pairs(*plan.specs[key.dataset])
            * EXAMPLE_COST[job.model] for key, job in work(plan, params).items()}


def expected_epochs(plan: Plan, params: TunedParams) -> dict[tuple, float]:
    """Epochs each job is expected to train, summed over its models: what a job's ended epochs
    are counted against to move the progress bar while it runs."""
    return {key: job.epochs for key, job in work(plan, params).items()}


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


def work(plan: Plan, params: TunedParams, unstopped: bool = False) -> dict[tuple, Work]:
    """What each job of the plan trains; ``unstopped``: if early stopping stopped nothing, every run
    with a patience training all its space's epochs (Rendle's MF: 256, where 48 are expected)."""
    out = {}
    for study in plan.studies:
        spec, _ = plan.specs[study.dataset]
        if VARIANTS[study.variant].reference:  # one fit a trial
            out[plan.study_key(study)] = Work("reference", 1, ((float(plan.budget), 1.0),))
            continue
        _, train_cfg = variant_configs(spec, VARIANTS[study.variant], params)
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
        _, train_cfg = variant_configs(spec, VARIANTS[unit.variant], params)
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


def makespan(jobs_list: list[Job], workers: int, seconds: dict[tuple, float]) -> float:
    """Wall time of the jobs on ``workers`` workers, scheduled as the pool schedules them (longest
    path first, each job once its dependencies are done), each taking its ``seconds``: a job trains
    on its share of the cores whatever runs beside it (``bench.run.pool``). Event-driven with heaps,
    so a plan of 10^5 units is priced in a second."""
    from bench.run.pool import priorities

    rank = priorities(jobs_list)
    workers = max(1, min(workers, len(jobs_list)))
    order = {j.key: n for n, j in enumerate(sorted(jobs_list, key=lambda j: -rank[j.key]))}
    waits = {j.key: len(j.after) for j in jobs_list}
    dependents: dict[Any, list[Any]] = {j.key: [] for j in jobs_list}
    for j in jobs_list:
        for k in j.after:
            dependents[k].append(j.key)
    ready = [(order[k], k) for k, n in waits.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int, Any]] = []  # (when it ends, its order, key)
    clock, finished = 0.0, 0
    while ready or running:
        while ready and len(running) < workers:
            n, key = heapq.heappop(ready)
            heapq.heappush(running, (clock + seconds.get(key, 0.0), n, key))
        clock, _, key = heapq.heappop(running)
        finished += 1
        for d in dependents[key]:
            waits[d] -= 1
            if waits[d] == 0:
                heapq.heappush(ready, (order[d], d))
    if finished < len(jobs_list):
        raise ValueError(f"jobs wait on each other: {[k for k, n in waits.items() if n > 0]}")
    return clock

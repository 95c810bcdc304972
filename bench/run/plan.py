"""What a run will do, as one dependency graph: every (data set, variant) study of a tuned run, and
the seeded units (a variant's pending seeds of one seed group on one device) that wait for their
study, and for a pretrained NeuMF also for its GMF and MLP. A data set's units start as soon as its
studies end, while other studies still run. Costs are estimated to order the work (longest path
first), to drive the progress bar's time left, and for ``bench run --plan``, which prices them in
seconds (``bench.estimate``) and prints the plan and its estimated wall time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from bench import layout
from bench.compute.references import run_reference_study
from bench.compute.study import StudyJob, StudySettings, run_study
from bench.compute.units import UnitJob, UnitSettings, run_unit
from bench.configs import Resolved, record, resolved_settings
from bench.run.datasets import training_pairs
from bench.run.options import memory_budget
from bench.run.pool import Job
from bench.run.store import trial_key
from bench.search import PRUNERS, TUNE_SEED
from bench.suites import DataSpec
from bench.variants import BASELINE, PRETRAIN_BASES, VARIANTS, chain_rank
from ncf_core.tasks import task_of

STACK_CAP = 16
# The K trials of a stack are asked together, as K parallel workers' would be: none learns from the
# others' values. A study asks at least five times, so that TPE learns between rounds (12 trials in
# stacks of 4 would leave it three rounds, the last one still inside its random start-up).
MIN_ROUNDS = 5


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
    resolved: dict[tuple[int, str], Resolved] = field(default_factory=dict)  # (data set, variant) -> settings

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
    """Trials per stack: ``--tune-stack``; else one at a time on a CPU, and on CUDA about the square
    root of the budget, few enough that the study asks ``MIN_ROUNDS`` times (a budget under 10 runs one
    at a time), capped by what fits a quarter of the smallest memory (a member holds its tables, their
    gradients and Adam's two moments, at the widest shapes searched).

    Each trial trains with its own batches and negatives, and on a CPU a step costs about its rows:
    a stack of such trials costs what they cost one by one (ml-100k, 12 trials in stacks of 2:
    1.08-1.32x one at a time for MLP, GMF and MF, docs/results.md). Stacking pays where a small step is bound by kernel
    launches, as on a GPU."""
    if requested is not None:
        return max(1, min(requested, budget))  # a stack never holds more trials than its study has
    if devices[0] == "cpu":  # the study trains on the run's first device
        return 1
    rows = (data.train.n_users + data.train.n_items) if hasattr(data, "train") else (data.n_users + data.n_items)
    member = rows * (192 + 128) * 4 * 4  # the widest searched: MF 192 factors; NeuMF 64 + half a 256 tower
    fits = max(1, memory_budget(devices) // member)
    return int(max(1, min(budget, STACK_CAP, fits, math.ceil(math.sqrt(budget)), budget // MIN_ROUNDS)))


def make_plan(specs: list[tuple[DataSpec, Any]], devices: tuple[str, ...], seeds: list[int], variants: tuple[str, ...],
              baselines: bool, done: set[tuple], budget: int, opts: Any,
              resolved: dict[tuple[int, str], Resolved] | None = None) -> Plan:
    """``resolved``: every variant's settings (``bench.configs.resolved_settings``), worked out here
    where not given."""
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
    plan.resolved = resolved if resolved is not None else resolved_settings(specs, variants, baselines, opts.params)
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


def jobs(plan: Plan, run_dir: Path, jobs_count: int, device: str,
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
    unit_settings = [UnitSettings(spec, {v: r for (i, v), r in plan.resolved.items() if i == index}, plan.tuning,
                                  plan.stack, jobs_count, checkpoints) for index, (spec, _) in enumerate(plan.specs)]
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

"""What a run shows on the console: the plan ``--plan`` prints, and a line per stored trial."""

from __future__ import annotations

import json
from typing import Any

from bench.run.plan import Plan
from bench.variants import BASELINE, VARIANTS
from ncf_core.tasks import TASKS


def describe_plan(plan: Plan, seconds: dict[tuple, float], wall: float, jobs: int, threads: int,
                  span: dict[tuple, tuple[float, float]] | None = None, bounds: dict[str, float] | None = None) -> str:
    """What ``--plan`` prints: per data set and device, the studies and seeded units, their
    estimated seconds, and the run's estimated wall time (with its span where winners decide)."""
    span, bounds = span or {}, bounds or {}
    lines = [f"plan: {len(plan.trials)} trials ({len(plan.pending)} to run), {len(plan.studies)} studies, "
             f"{len(plan.units)} seeded units, {jobs} job{'s' * (jobs > 1)} of {threads} "
             f"thread{'s' * (threads > 1)}"]
    for index, (spec, _) in enumerate(plan.specs):
        lines.append(f"\n{spec.label} ({spec.task}):")
        for study in (s for s in plan.studies if s.dataset == index):
            key = plan.study_key(study)
            at_a_time = 1 if VARIANTS[study.variant].reference else plan.stacks[spec.label]
            lines.append(f"  study {study.variant:<15} {plan.budget} trials, {at_a_time} at a time"
                         f"{'':>8}~{seconds.get(key, 0) / 60:6.1f} min")
        per_seed: dict[str, list[float]] = {}  # a baseline's units, one a seed: one line for all
        for unit in (u for u in plan.units if u.dataset == index):
            key = plan.unit_key(unit)
            if unit.variant.startswith(BASELINE):
                per_seed.setdefault(unit.variant, []).append(seconds.get(key, 0))
                continue
            low_high = (f"  ({span[key][0] / 60:.1f}-{span[key][1] / 60:.1f} by its winner)"
                        if key in span and span[key][1] > span[key][0] * 1.05 else "")
            lines.append(f"  unit  {unit.variant:<24} {unit.device:<4} {'seeds ' + _seeds(unit.seeds):<24}"
                         f"~{seconds.get(key, 0) / 60:6.1f} min{low_high}")
        lines += [f"  unit  {name:<24} cpu  {f'{len(s)} seeds, a unit each':<24}~{sum(s) / 60:6.1f} min"
                  for name, s in per_seed.items()]
    total = sum(seconds.values())
    at = ("the settings each study draws before TPE learns, the rest of its space fitted" if plan.budget
          else "the settings of each job")
    between = (f"; {bounds['cheapest'] / 60:.1f}-{bounds['costliest'] / 60:.1f} min with every winner at its "
               "study's cheapest or costliest structure" if "cheapest" in bounds else "")
    if "unstopped" in bounds:
        between += (f"; {bounds['unstopped'] / 60:.1f} min if early stopping stopped nothing (runs with a "
                    "patience are taken to end three patiences in)")
    lines.append(f"\nestimated: {total / 60:.1f} min of work, {wall / 60:.1f} min wall time on {jobs} "
                 f"job{'s' * (jobs > 1)}{between} (a probe of the engine at {at}; "
                 "where TPE goes next, pruning and early stopping move it)")
    return "\n".join(lines)


def _seeds(seeds: tuple[int, ...]) -> str:
    """A unit's seeds, as a range where they run on (a group can hold thousands)."""
    if len(seeds) > 3 and list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return json.dumps(list(seeds))


def one_line(r: dict[str, Any]) -> str:
    head = f"{r['dataset']}/{r['task']} {r['variant']:<24} {r['device']:<4} seed {r['seed']:<2}"
    if r["status"] != "ok":
        return f"{head} {r['status'].upper()}: {r.get('error', '')}"
    k = next((int(name.split("@")[1]) for name in r["metrics"] if "@" in name), 10)
    primary = TASKS[r["task"]].primary_metric(k)  # the verdict's metric first, then the sampled ones
    shown = [primary] * (primary in r["metrics"]) + [n for n in r["metrics"]
                                                     if n != primary and not n.startswith("full_")]
    m = "  ".join(f"{n}={r['metrics'][n]:.4f}" for n in shown)
    speed = (f"{r.get('train_samples_per_s', 0) or 0:,.0f} samples/s" if r.get("train_samples_per_s") else
             f"fit {r.get('train_seconds') or 0:.1f}s" if r.get("train_rows") else "baseline")
    if (r.get("stacked_seeds") or 1) > 1:
        speed += f" per seed, {r['stacked_seeds']} stacked"
    return f"{head} {m}  ({r['wall_seconds']:.1f}s, {speed})"

"""The summary's budget line: how each variant's settings were chosen, and whether alike."""

from __future__ import annotations

import json
import math
from typing import Any

from bench.search import TPE_STARTUP
from bench.variants import BASELINE, REFERENCE_VARIANTS
from ncf_core.tasks import TASKS

UNEQUAL = "Tuning: **unequal**"
DEFAULTS = "the protocol's defaults"


def budget_lines(records: list[dict[str, Any]],
                 structures: dict[tuple[str, str], dict[str, int]] | None = None) -> dict[tuple[str, str], str]:
    """Per data set, one line on how the variants' settings were chosen: the comparison is only fair
    if alike. Each variant's source is one of: tuned in this run (N trials), a params file or preset
    (``bench.params``), or the protocol's defaults. ``structures``: the distinct structures each
    study tried (``bench.analysis.tuning.structures_tried``)."""
    out = {}
    for key in dict.fromkeys((r["dataset"], r["task"]) for r in records):
        learned = [r for r in records if (r["dataset"], r["task"]) == key and not r["variant"].startswith(BASELINE)]
        tunings = {json.dumps((r.get("config") or {}).get("tuning"), sort_keys=True) for r in learned}
        sources = {r["variant"]: source(r) for r in learned}
        if len(set(sources.values())) > 1:
            out[key] = (f"{UNEQUAL} — " + "; ".join(f"{v}: {s}" for v, s in sources.items())
                        + ". Give every variant the same budget (`bench run --tune N`) for a fair comparison.")
            continue
        if tunings == {"null"} and set(sources.values()) != {DEFAULTS}:
            out[key] = (f"Settings: every variant from {next(iter(sources.values()))}; no study ran here, so their "
                        "budgets are what those files say.")
            continue
        if tunings == {"null"}:
            out[key] = ("Tuning: none — every variant runs at the paper's default settings; untuned comparisons "
                        "can mislead (Rendle et al. 2020), see `bench run --tune N`.")
        elif len(tunings) == 1:
            t = json.loads(tunings.pop())
            stack = (t.get("stack") or {}).get(key[0])
            at_a_time = f", {stack} at a time as one stacked module" if stack and stack > 1 else ", one at a time"
            out[key] = (f"Tuning: every variant had the same budget — {t['budget']} Optuna trials ({t['sampler']}, "
                        f"{t['pruner']} pruner{at_a_time if stack else ''}) on the validation split of seed "
                        f"{t['split_seed']}, none of the evaluation seeds; best settings, trial counts by state and "
                        "study times in manifest.json.")
            tried = {v: n for v, n in ((structures or {}).get(key) or {}).items() if v not in REFERENCE_VARIANTS}
            if tried:  # equal trials need not be equal structures: say how many each study tried
                out[key] += (" Every trial drew its own structure (batch size, negatives, MLP depth, optimizer), "
                             "stacked or not; the studies tried " + ", ".join(f"{v} {n}" for v, n in tried.items())
                             + f" distinct structures in their {t['budget']} trials.")
            # TPE draws at random until TPE_STARTUP trials have finished, and a stack is asked once the
            # one before it has finished: where every stack is asked before that, TPE never used its
            # model, and a reader who sees "TPE" would assume it did
            per = stack or 1
            if t["sampler"].startswith("TPE") and (math.ceil(t["budget"] / per) - 1) * per < TPE_STARTUP:
                out[key] += (f" With {t['budget']} trials, {per} at a time, TPE never left its random start-up (it "
                             f"draws at random until {TPE_STARTUP} trials have finished): each study was a random "
                             "search.")
            task = TASKS[key[1]]
            if task.selection_metric() != task.primary_metric():  # say it: the two orders may differ
                out[key] += (f" The studies selected on the validation split's {task.selection_metric()} (sampled "
                             f"negatives) while the verdict reads {task.primary_metric()} (full ranking); how far "
                             "the two orders agree is measured on the test split below.")
            if any(r["variant"] in REFERENCE_VARIANTS for r in learned):
                out[key] += (" The reference baselines' studies had the same budget, one trial at a time and no "
                             "pruner (a fit is not trained by epochs).")
        else:
            out[key] = f"{UNEQUAL} — the variants of this data set were tuned differently."
    return out


def source(record: dict[str, Any]) -> str:
    """Where a trial's settings came from, in words."""
    config = record.get("config") or {}
    if config.get("tuning"):
        return f"tuned here ({config['tuning']['budget']} trials)"
    settings = config.get("settings")
    return DEFAULTS if settings in (None, "defaults") else f"settings from {settings}"

"""What a run's jobs cost in seconds on this machine, for ``bench run --plan`` and the progress
bar's time left: a short probe trains each (data set, variant, stack size, device) for 0.3 s.

In a tuned run an epoch's cost depends on where the search goes: Rendle's MF space spans ~50x
(dense Adam moves every row of 192-factor tables each of ~70k steps; plain SGD moves a batch's
rows). TPE's first trials are random draws fixed by the sampler's seed, so the probe times the
structures those trials will train. For the trials TPE picks later it times a handful of settings
drawn from the space and fits an epoch's seconds as a sum of three costs a setting's shapes fix — a
fixed cost per step, the parameters the optimizer moves each step, and per-example work (embedding
widths plus layer weights) — then averages that fit over many draws, corners included.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls
from torch import nn

from bench.compute.study import foreseen_trials
from bench.configs import Resolved, overridden, split_for
from bench.estimate.work import work
from bench.run.plan import JobKey, Plan
from bench.search import space_draws
from bench.suites import DataSpec
from bench.variants import BASELINE, VARIANTS
from ncf_core.baselines.scoring import fit_reference
from ncf_core.engine.gradients import row_gradients
from ncf_core.engine.optim import make_optimizer, plain_sgd
from ncf_core.engine.seeding import seeded_model, sync
from ncf_core.engine.stacked import stack
from ncf_core.engine.train import train_steps
from ncf_core.evaluate import Evaluator, grid
from ncf_core.models import build
from ncf_core.tasks import task_of

PROBE_USERS = 256  # users of the test's full ranking timed, scaled to all
PROBE_DRAWS = 6  # settings a probe times, drawn from the search space
PROBE_S, PROBE_EXAMPLES_MAX = 0.3, 500_000  # how long a setting is timed, at most
SPACE_DRAWS = 512  # settings the fitted cost is averaged over
PROBE_STACK = 16  # most models a probe stacks: a bigger stack is priced per model as this one (a bound)


def measured_costs(plan: Plan, threads: int, log: Any = print,
                   span: dict[tuple, tuple[float, float]] | None = None,
                   unstopped: dict[tuple, float] | None = None) -> dict[tuple, float]:
    """Seconds per job at ``threads`` threads: each part of its epochs (``plan.work``) times an
    epoch's seconds at the stack size it trains at, and a validation pass; a unit's test. Both a
    study and the seeds of its tuned winner are priced at the mean over the space: a study trains
    settings from all over it, and a winner is one of them, no cheaper than most (on the quick
    suite, the median priced the winners' seeds at 0.59x what they took: winners favour more
    negatives and smaller batches). A stack's seconds per model are probed at its full size and
    alone, and taken between the two (log-log) for a stack that pruning has thinned. ``span``, where
    given, receives each tuned unit's seconds at the cheapest and the costliest structure the probe
    timed for its study: the winner is one of the study's trials, and which one decides the most.
    ``unstopped``, where given, receives the seconds of each job that early stopping could shorten,
    as if it stopped nothing (``plan.work``)."""
    torch.set_num_threads(threads)
    speed: dict[tuple, tuple[np.ndarray, float, float]] = {}
    splits: dict[int, Any] = {}  # one split a data set, for every probe on it
    out = {}
    full = work(plan, unstopped=True) if unstopped is not None else {}
    for key, job in work(plan).items():
        spec, data = plan.specs[key.dataset]
        if key.variant.startswith(BASELINE):
            out[key] = 0.5
            continue
        if job.model == "reference":  # a fit and a validation (study) or a test (unit) each, at the defaults
            if key.dataset not in splits:
                splits[key.dataset] = split_for(spec, data, 0)
            probe = (key.dataset, key.variant, "reference")
            if probe not in speed:
                speed[probe] = _reference_probe(spec, splits[key.dataset], plan.resolved[key.dataset, key.variant], log)
            fit_s, valid_s, test_s = speed[probe]
            out[key] = job.epochs * (fit_s + (valid_s if key.study else test_s))
            continue
        device, variant = key.device or plan.devices[0], key.variant
        epoch_s = {}
        trials = key.study and job.size > 1  # members with their own lr, not seeds sharing one
        for size in {job.size, *(1 for _, live in job.rungs if live < job.size)}:
            probe = (key.dataset, variant, size, device, trials and size > 1)
            if probe not in speed:
                started = time.perf_counter()
                if key.dataset not in splits:
                    splits[key.dataset] = split_for(spec, data, 0)
                *speed[probe], said = _priced(spec, splits[key.dataset], plan.resolved[key.dataset, variant], size,
                                              device, plan, probe[-1])
                log(f"probe: {variant} on {spec.label}, {size} stacked{' trials' * probe[-1]} on {device}{said} "
                    f"({time.perf_counter() - started:.1f} s)")
            epoch_s[size] = speed[probe][0]
        _, valid_s, test_s = speed[(key.dataset, variant, job.size, device, trials)]
        at = {name: {size: float(pick(e)) for size, e in epoch_s.items()}
              for name, pick in (("mean", np.mean), ("low", np.min), ("high", np.max))}
        priced = {name: _job_seconds(job, key, seconds, valid_s, test_s) for name, seconds in at.items()}
        out[key] = priced["mean"]
        if key in full and full[key] != job:
            unstopped[key] = _job_seconds(full[key], key, at["mean"], valid_s, test_s)
        if span is not None and plan.budget and not key.study:
            span[key] = (priced["low"], priced["high"])
    return out


def _reference_probe(spec: DataSpec, split: Any, resolved: Resolved, log: Any) -> tuple[float, float, float]:
    """(a fit's seconds at the reference's settings, a validation pass, the test's full ranking)."""
    variant = resolved.variant.name
    started = time.perf_counter()
    model = fit_reference(resolved.variant.model, split.train, resolved.reference, 0, torch.get_num_threads())
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    Evaluator(split, "valid", "cpu", k=spec.train.k).loss_and_metric(model)
    valid_s = time.perf_counter() - started
    started = time.perf_counter()
    Evaluator(split, "test", "cpu", k=spec.train.k).evaluate(model)
    test_s = time.perf_counter() - started
    log(f"probe: {variant} on {spec.label}: a fit {fit_s:.2f} s, validation {valid_s:.2f} s, test {test_s:.2f} s")
    return fit_s, valid_s, test_s


def _job_seconds(job: Any, key: JobKey, epoch_s: dict[int, float], valid_s: float, test_s: float) -> float:
    seconds = sum(e * (_thinned(epoch_s, job.size, live) + valid_s) for e, live in job.rungs)
    seconds -= job.refit * valid_s  # a refit does not validate
    return seconds + (0.0 if key.study else test_s * job.size)  # a unit tests each of its seeds


def _thinned(epoch_s: dict[int, float], size: int, live: float) -> float:
    """Seconds an epoch a model in a stack of ``live`` models, from those probed at 1 and ``size``."""
    if live >= size or 1 not in epoch_s or size == 1:
        return epoch_s[size]
    slope = np.log(epoch_s[1] / epoch_s[size]) / np.log(size)
    return float(epoch_s[size] * (live / size) ** -slope)


def _priced(spec: DataSpec, split: Any, resolved: Resolved, size: int, device: str, plan: Plan,
            members: bool = False) -> tuple[np.ndarray, float, float, str]:
    """(an epoch's seconds for each trial of the study, or at the defaults untuned; a validation
    pass; the test; what was measured, in words). A trial whose settings the sampler fixes before
    anything trains (``study_settings``) is timed at its stack's structure; the others are priced at
    the mean of a cost fitted over the search space."""
    variant = resolved.variant.name
    if not plan.budget:
        timed, valid_s, test_s = _probe(spec, split, resolved, size, device, [{}])
        said = f": {timed[0]:.2f} s an epoch a model, validation {valid_s:.2f} s, test {test_s:.2f} s"
        return timed, valid_s, test_s, said
    known, unknown = study_settings(plan, spec, variant)
    structures = {_structure(s): s for s in known}
    draws = space_draws(VARIANTS[variant], spec.task, spec.search, PROBE_DRAWS) if unknown else []
    settings = [*structures.values(), *draws]
    timed, valid_s, test_s = _probe(spec, split, resolved, size, device, settings, members=members)
    at = dict(zip(structures, timed))
    seconds = [at[_structure(s)] for s in known]
    said = f" at the {len(known)} trials the sampler draws before it learns ({len(structures)} structures): " \
           f"{', '.join(f'{x:.2f}' for x in timed[:len(structures)])} s an epoch a model"
    if unknown:
        space = space_draws(VARIANTS[variant], spec.task, spec.search, SPACE_DRAWS, seed=1)
        models: dict = {}
        fitted = fit_epoch_cost([shape_costs(spec, split, resolved, d, models)
                                 for d in [*structures.values(), *draws]], timed,
                                [shape_costs(spec, split, resolved, d, models) for d in space])
        seconds += [float(fitted.mean())] * unknown
        said += (f"; the {unknown} TPE chooses at the mean of a cost fitted on {len(draws)} more drawn from "
                 f"its space ({', '.join(f'{x:.2f}' for x in timed[len(structures):])}) over {len(space)} "
                 f"draws: {fitted.mean():.2f}")
    said += f"; validation {valid_s:.2f} s, test {test_s:.2f} s"
    return np.array(seconds), valid_s, test_s, said


def study_settings(plan: Plan, spec: DataSpec, variant: str) -> tuple[list[dict], int]:
    """The settings of a study's trials known before it runs, and how many are not: TPE's random
    start-up draws (``foreseen_trials``). A pretrained NeuMF's shapes are those of its GMF's and
    MLP's winners, one of their trials: trial n takes the shapes of their trial n."""
    stack = plan.stacks[spec.label]

    def seen(name: str) -> list[dict | None]:
        return foreseen_trials(name, spec.task, spec.search, plan.budget, stack, plan.sampler_seed)

    trials = seen(variant)
    if VARIANTS[variant].pretrained:
        gmf, mlp = seen("gmf"), seen("mlp")
        drawn = space_draws(VARIANTS[variant], spec.task, spec.search, len(trials))
        for n, t in enumerate(trials):
            if t is not None:
                t["model"]["n_factors"] = (gmf[n] or drawn[n])["model"]["n_factors"]
                t["model"]["mlp_layers"] = (mlp[n] or drawn[n])["model"]["mlp_layers"]
    for lo in range(0, len(trials), stack):  # a stack's members train padded to its widest
        _widest([t for t in trials[lo:lo + stack] if t is not None])
    known = [t for t in trials if t is not None]
    return known, len(trials) - len(known)


def _widest(members: list[dict]) -> None:
    """Members priced at their stack's widest shapes (``ncf_core.engine.stacked`` pads to them); trials
    asked together that differ in depth or optimizer train as stacks of their own (``by_structure``)."""
    groups: dict[tuple, list[dict]] = {}
    for m in members:
        key = (len(m["model"].get("mlp_layers") or ()), m["train"].get("optimizer"))
        groups.setdefault(key, []).append(m["model"])
    for models in groups.values():
        factors = [m["n_factors"] for m in models if "n_factors" in m]
        towers = [m["mlp_layers"] for m in models if m.get("mlp_layers")]
        for m in models:
            if factors:
                m["n_factors"] = max(factors)
            if towers:
                m["mlp_layers"] = tuple(max(w) for w in zip(*towers))


def _structure(settings: dict) -> tuple:
    """What a setting's cost depends on: its shapes and batches, not its learning rate."""
    model, train = settings["model"], settings["train"]
    return (*(train.get(k) for k in ("batch_size", "n_negatives", "optimizer", "reduction")),
            model.get("n_factors"), tuple(model.get("mlp_layers") or ()))


def shape_costs(spec: DataSpec, split: Any, resolved: Resolved, draw: dict,
                models: dict | None = None) -> np.ndarray:
    """An epoch's (steps, parameters the optimizer moves over them, example work) at one setting, for
    one model, counted on a model built and not trained. ``models`` caches the counts of each model
    shape, which many draws share (the meta device would allocate nothing, but its initialisers
    take ~0.1 s a table)."""
    model_cfg, train_cfg = overridden(spec, resolved.model, resolved.train, draw)
    shape = (resolved.variant.model, model_cfg.n_factors, model_cfg.mlp_layers, model_cfg.use_item_features,
             train_cfg.sparse)
    models = {} if models is None else models
    if shape not in models:
        feats = split.train.item_features
        with torch.no_grad():
            model = build(shape[0], model_cfg, split.n_users, split.n_items,
                          None if feats is None else torch.from_numpy(feats), train_cfg.sparse)
        tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
        weights = sum(p.numel() for p in model.parameters())
        models[shape] = (weights, weights - sum(t.weight.numel() for t in tables),
                         sum(t.embedding_dim for t in tables))
    weights, layers, width = models[shape]
    examples = _epoch_examples(spec, split, train_cfg)
    steps = examples / train_cfg.batch_size
    moved = layers if (train_cfg.sparse or plain_sgd(train_cfg)) else weights  # rows only: a batch's
    return np.array([steps, steps * moved, examples * (width + layers)], float)


def _epoch_examples(spec: DataSpec, split: Any, train_cfg: Any) -> int:
    return len(split.train) * task_of(spec.task).examples_per_row(train_cfg.n_negatives)


def fit_epoch_cost(timed_shapes: list[np.ndarray], timed_s: np.ndarray, shapes: list[np.ndarray]) -> np.ndarray:
    """Seconds an epoch takes at each of ``shapes``, from a non-negative least-squares fit of the
    timed settings' seconds on their shapes' three costs. Relative errors are what matter (the
    timed seconds span ~50x), so each timed setting is weighted by one over its seconds."""
    x = np.array(timed_shapes, float)
    y = np.asarray(timed_s, float)
    scale = np.maximum(x.max(axis=0), 1e-12)  # columns of like size, so the fit is well conditioned
    coef, _ = nnls((x / scale) / y[:, None], np.ones_like(y))
    return (np.array(shapes, float) / scale) @ coef


def _probe(spec: DataSpec, split: Any, resolved: Resolved, size: int, device: str, draws: list[dict],
           steps: int = 20, members: bool = False) -> tuple[np.ndarray, float, float]:
    """(seconds a training epoch takes a model at each of ``draws``' settings; a validation pass;
    the test: a full ranking for a ranking task, else a scoring pass like the validation's)."""
    v = resolved.variant
    epoch_s = []
    size = min(size, PROBE_STACK)  # the plan's memory and time stay bounded whatever the run's stack
    for draw in draws:
        model_cfg, train_cfg = overridden(spec, resolved.model, resolved.train, draw)
        models = [seeded_model(v.model, model_cfg, split, s, device, train_cfg.sparse) for s in range(size)]
        module = models[0] if size == 1 else stack(models)
        # a study's members each have their own lr (the optimizers' per-member path); seeds share one
        cfgs = [replace(train_cfg, lr=train_cfg.lr * (1 + 0.01 * s)) for s in range(size)] if members else train_cfg
        restore = row_gradients(module, plain_sgd(train_cfg))
        optimizers = make_optimizer(module, cfgs, torch.device(device))
        gen = torch.Generator().manual_seed(0)
        shape = (size, train_cfg.batch_size * steps) if size > 1 else (train_cfg.batch_size * steps,)
        u = torch.randint(split.n_users, shape, generator=gen).to(device)
        i = torch.randint(split.n_items, shape, generator=gen).to(device)
        y = torch.randint(2, shape, generator=gen).float().to(device)
        warm = train_cfg.batch_size * 3
        train_steps(module, optimizers, train_cfg, u[..., :warm], i[..., :warm], y[..., :warm])
        done, started = 0, time.perf_counter()
        while True:  # whole passes over the drawn steps until PROBE_S: 20 steps alone are too few to time
            sync(device)
            elapsed = time.perf_counter() - started
            if (done and elapsed >= PROBE_S) or done >= PROBE_EXAMPLES_MAX:
                break
            train_steps(module, optimizers, train_cfg, u[..., warm:], i[..., warm:], y[..., warm:])
            done += shape[-1] - warm
        per_s = size * done / elapsed
        restore()
        epoch_s.append(_epoch_examples(spec, split, train_cfg) / per_s)
    started = time.perf_counter()
    Evaluator(split, "valid", device, k=train_cfg.k).loss_and_metric(models[0])
    valid_s = time.perf_counter() - started
    if not task_of(spec.task).implicit:  # the test is scored like the validation part
        return np.array(epoch_s), valid_s, valid_s * len(split.test) / max(1, len(split.valid))
    test_users = np.unique(split.test.users)
    users = torch.from_numpy(test_users[:PROBE_USERS]).to(device)  # the full ranking, on a sample
    started = time.perf_counter()
    grid(models[0], users, torch.arange(split.n_items, device=device))
    return np.array(epoch_s), valid_s, (time.perf_counter() - started) * len(test_users) / max(1, len(users))

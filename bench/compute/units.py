"""A seeded unit: one variant on one device for some seeds of one data set, trained together
(stacked), refit where the protocol says so, and read on the test split once; or a baseline, or a
reference baseline (``bench.compute.references``)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bench import faults
from bench.compute import progress
from bench.compute.pretrain import PretrainCache, pretrained_neumfs
from bench.compute.references import reference_records
from bench.configs import Resolved, failed, record, resolve, split_for
from bench.params import TunedParams
from bench.suites import DataSpec
from bench.variants import BASELINE, PRETRAIN_BASES, VARIANTS
from ncf_core import TrainConfig
from ncf_core.baselines.simple import fit_baseline
from ncf_core.data import Interactions, Split
from ncf_core.data.splits import refit_split
from ncf_core.engine.history import History
from ncf_core.engine.seeding import seeded_model
from ncf_core.engine.train import fit_group
from ncf_core.evaluate import Evaluator


@dataclass(frozen=True)
class UnitJob:
    """A variant (or ``baseline-<name>``) on a device for the pending seeds of one seed group."""

    dataset: int  # index into the run's data sets
    group: tuple[int, ...]  # the seed group, trained together (stacked) whatever is stored already
    device: str
    variant: str
    seeds: tuple[int, ...]  # the group's pending seeds: the records it returns


@dataclass(frozen=True)
class UnitSettings:
    """What a unit needs besides its data: the protocol, the run's settings, where checkpoints go."""

    spec: DataSpec
    resolved: dict[str, Resolved]  # each variant's settings (--params applied); a tuned run's winners
    # arrive as dependencies instead
    tuning: dict[str, Any] | None  # the run's tuning protocol, recorded in each trial's config
    stack: bool
    jobs: int
    checkpoints: str | None


def run_unit(job: UnitJob, settings: UnitSettings, data: Interactions | Split, *deps: dict[str, Any]) -> dict:
    """The unit's records and, for a GMF or MLP, the trained models its pretrained NeuMF starts from.
    ``deps``: results of the studies that tuned it (``entry``) and of the units that trained its bases."""
    spec = settings.spec
    tuned = [d["entry"] for d in deps if "entry" in d]
    resolved = resolve(spec, VARIANTS[job.variant], TunedParams(tuned)) if tuned else settings.resolved[job.variant]
    cache = PretrainCache(settings.checkpoints)
    for dep in deps:
        cache.memory.update(dep.get("trained", {}))
    if job.variant.startswith(BASELINE):
        config = resolved.config()
        return {"records": [_baseline(spec, split_for(spec, data, s), s, job.variant, config) for s in job.seeds]}
    if resolved.variant.reference:  # fitted seed by seed: nothing to stack
        return {"records": reference_records(spec, data, job.seeds, job.device, resolved, settings.tuning,
                                             settings.jobs)}
    splits = {s: split_for(spec, data, s) for s in job.group}
    records = [r for r in _trials(spec, splits, list(job.group), job.device, resolved, settings, cache)
               if r["seed"] in job.seeds]
    trained = {}
    if job.variant in PRETRAIN_BASES:
        trained = {k: m.cpu() for k, m in cache.memory.items()}
    return {"records": records, "trained": trained}


def _trials(spec: DataSpec, splits: dict[int, Split], seeds: list[int], device: str, resolved: Resolved,
            settings: UnitSettings, cache: PretrainCache) -> list[dict[str, Any]]:
    variant, model_cfg, train_cfg = resolved.variant, resolved.model, resolved.train
    config = resolved.config(settings.tuning)
    started = time.time()
    try:
        models = _models(spec, splits, seeds, device, resolved, cache)
        outcomes, stacked = fit_group(models, [splits[s] for s in seeds], train_cfg, device, seeds,
                                      on_epoch=_epoch_point, stack_members=settings.stack)
    except Exception as err:  # recorded as failed; the suite goes on
        return [failed(spec, variant.name, device, s, err, config, started) for s in seeds]
    config = {**config, "engine": {"stacked_seeds": stacked}}
    if variant.name in PRETRAIN_BASES:  # NeuMF starts from these (trained on training data only)
        for seed, model, outcome in zip(seeds, models, outcomes):
            if not isinstance(outcome, Exception):
                cache.put(PretrainCache.key(spec, device, seed, variant.name, model_cfg, train_cfg),
                          model)
    refits: dict[int, tuple[torch.nn.Module, History | Exception]] = {}
    if spec.refit:
        try:
            refits = _refit(spec, splits, seeds, device, resolved, outcomes, settings, cache)
        except Exception as err:
            return [failed(spec, variant.name, device, s, err, config, started) for s in seeds]
    out = []
    for seed, model, outcome in zip(seeds, models, outcomes):
        extra: dict[str, Any] = {}
        if seed in refits:
            model, refit = refits[seed]
            if isinstance(refit, Exception):
                outcome = refit
            else:
                extra = {"refit": {"epochs": len(refit.epochs), "train_rows": len(refit_split(splits[seed]).train),
                                   "train_seconds": refit.train_seconds}}
        if isinstance(outcome, Exception):
            out.append(failed(spec, variant.name, device, seed, outcome, config, started))
            continue
        try:
            evaluation = Evaluator(splits[seed], "test", device, k=train_cfg.k).evaluate(model)
        except Exception as err:
            out.append(failed(spec, variant.name, device, seed, err, config, started))
            continue
        out.append(record(
            spec, variant.name, device, seed, status="ok", epochs=len(outcome.epochs),
            best_epoch=outcome.best_epoch, train_seconds=outcome.train_seconds,
            train_samples_per_s=outcome.train_samples_per_s, stacked_seeds=stacked,
            threads=torch.get_num_threads(), jobs=settings.jobs, load_average=_load(),
            infer_samples_per_s=evaluation.samples_per_s, wall_seconds=time.time() - started,
            metrics=evaluation.metrics, history=[asdict(e) for e in outcome.epochs], config=config,
            per_user=evaluation.by_user(), **extra,
        ))
    return out


def _epoch_point(member: int, stats: Any) -> bool:
    progress.epoch()
    faults.point("unit-epoch")
    return True


def _refit_epoch(member: int, stats: Any) -> bool:
    progress.epoch()
    return True


def _models(spec: DataSpec, splits: dict[int, Split], seeds: list[int], device: str, resolved: Resolved,
            cache: PretrainCache) -> list[torch.nn.Module]:
    model_cfg, train_cfg = resolved.model, resolved.train
    if resolved.variant.pretrained:
        return pretrained_neumfs(cache, spec, splits, seeds, device, [model_cfg] * len(seeds),
                                 train_cfg.sparse, resolved.bases)
    return [seeded_model(resolved.variant.model, model_cfg, splits[s], s, device, train_cfg.sparse) for s in seeds]


def _refit(spec: DataSpec, splits: dict[int, Split], seeds: list[int], device: str, resolved: Resolved,
           outcomes: list[History | Exception], settings: UnitSettings,
           cache: PretrainCache) -> dict[int, tuple[torch.nn.Module, History | Exception]]:
    """Each seed again from the same initialisation, on training + validation data, for the number
    of epochs its validation chose; the test split is then read once, by the caller."""
    variant, model_cfg, train_cfg = resolved.variant, resolved.model, resolved.train
    chosen = {s: o.best_epoch for s, o in zip(seeds, outcomes) if not isinstance(o, Exception)}
    out: dict[int, tuple[torch.nn.Module, History | Exception]] = {}
    for epochs in sorted(set(chosen.values())):
        group = [s for s in seeds if chosen.get(s) == epochs]
        whole = {s: refit_split(splits[s]) for s in group}
        if variant.pretrained:  # from the GMF and MLP trained on training data only, as selected
            models = _models(spec, splits, group, device, resolved, cache)
        else:
            models = [seeded_model(variant.model, model_cfg, whole[s], s, device, train_cfg.sparse) for s in group]
        cfg = TrainConfig(**{**asdict(train_cfg), "epochs": epochs, "patience": None})
        results, _ = fit_group(models, [whole[s] for s in group], cfg, device, group, select=False,
                               on_epoch=_refit_epoch, stack_members=settings.stack)
        out.update({s: (m, r) for s, m, r in zip(group, models, results)})
    return out


def _baseline(spec: DataSpec, split: Split, seed: int, variant: str, config: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    model = fit_baseline(variant.removeprefix(BASELINE), split.train)
    evaluation = Evaluator(split, "test", "cpu", k=spec.train.k).evaluate(model)
    return record(spec, variant, "cpu", seed, status="ok", epochs=0, best_epoch=0, train_seconds=0.0,
                  infer_samples_per_s=evaluation.samples_per_s, wall_seconds=time.time() - started,
                  metrics=evaluation.metrics, config=config,
                  per_user=evaluation.by_user())


def _load() -> float | None:
    """The machine's 1-minute load average as the trial ends: a throughput measured beside other
    work says so in the report (None where the system does not tell)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None

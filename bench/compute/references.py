"""The reference baselines (EASE^R, iALS, ItemKNN, RP3β) under the NCF variants' protocol: fitted on
exactly the training data a variant of the same seed sees (train + validation where the protocol
refits), judged by the same evaluator on the same test item and negatives, and tuned by a study of
exactly N trials on the tuning seed's validation item with the same selection metric.

A reference does not train by epochs, so its study has no stacks and no pruner: trial n draws its
settings from a TPE sampler seeded (sampler seed, n), as every study's trial n does, and a trial a
killed run left open is drawn again from that same sampler, so a resumed study ends as an
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from bench import faults, layout
from bench.compute import optuna_api, progress
from bench.compute.storage import create_study, keep_protocol, protocol, quiet, storage_for, study_name
from bench.compute.study import StudyJob, StudySettings, finished_trials, make_sampler
from bench.configs import Resolved, failed, record, split_for
from bench.search import TUNE_SEED, search_space
from bench.suites import DataSpec
from bench.variants import VARIANTS, Variant
from ncf_core import DataError
from ncf_core.baselines import reference_config
from ncf_core.baselines.scoring import fit_reference
from ncf_core.data import Interactions, Split
from ncf_core.data.splits import refit_split
from ncf_core.evaluate import Evaluator
from ncf_core.tasks import higher_is_better, task_of

NO_PRUNER = "none (a reference does not train by epochs)"


def reference_records(spec: DataSpec, data: Interactions | Split, seeds: tuple[int, ...], device: str,
                      resolved: Resolved, tuning: dict[str, Any] | None, jobs: int) -> list[dict[str, Any]]:
    """One record per seed: the reference fitted on that seed's training data, read on its test split."""
    variant, cfg = resolved.variant, resolved.reference
    config = resolved.config(tuning)
    out = []
    for seed in seeds:
        started = time.time()
        try:
            split = split_for(spec, data, seed)
            train = refit_split(split).train if spec.refit else split.train
            clock = time.perf_counter()
            model = fit_reference(variant.model, train, cfg, seed, torch.get_num_threads()).to(device)
            fit_s = time.perf_counter() - clock
            progress.epoch()
            faults.point("unit-epoch")
            evaluation = Evaluator(split, "test", device, k=spec.train.k).evaluate(model)
        except Exception as err:  # recorded as failed (a reference too large for memory says so); the suite goes on
            out.append(failed(spec, variant.name, device, seed, err, config, started))
            continue
        out.append(record(spec, variant.name, device, seed, status="ok", epochs=getattr(cfg, "epochs", 0),
                          best_epoch=0, train_seconds=fit_s, threads=torch.get_num_threads(), jobs=jobs,
                          infer_samples_per_s=evaluation.samples_per_s, wall_seconds=time.time() - started,
                          metrics=evaluation.metrics, config=config, train_rows=len(train),
                          per_user=evaluation.by_user()))
    return out


def run_reference_study(job: StudyJob, settings: StudySettings, data: Interactions | Split,
                        *bases: dict[str, Any]) -> dict[str, Any]:
    """The reference's study run to its budget (resumed where it stopped): its best settings as a
    params entry, and what it did, in the shape ``bench.compute.study.run_study`` returns."""
    started = time.time()
    spec, variant = settings.spec, VARIANTS[job.variant]
    split = split_for(spec, data, TUNE_SEED)
    metric = task_of(spec.task).selection_metric(spec.train.k)
    folder = Path(settings.folder)
    name = settings.name or study_name(spec, variant.name)
    storage = storage_for(settings.storage or f"sqlite:///{folder / layout.STUDIES}", settings.heartbeat,
                          settings.grace)
    study = create_study(name, storage, direction="maximize" if higher_is_better(metric) else "minimize")
    keep_protocol(study, protocol(settings, torch.get_num_threads()), folder / layout.STUDIES,
                  f"the {variant.name} study on {spec.label}")
    evaluator = Evaluator(split, "valid", settings.device, k=spec.train.k)
    while len(finished_trials(study)) < settings.budget:
        trial = _next_trial(study, settings.sampler_seed)
        with quiet():
            params = search_space(trial, variant, spec.task, spec.search)
        trial.set_user_attr("config", json.loads(json.dumps(params)))
        try:
            cfg = reference_config(variant.model, params["model"])
            model = fit_reference(variant.model, split.train, cfg, TUNE_SEED, torch.get_num_threads())
            value = evaluator.loss_and_metric(model.to(settings.device))[1]
        except MemoryError as err:
            raise DataError(spec.source, f"{variant.name}: {err}") from None
        progress.epoch()
        faults.point("study-epoch")
        if math.isfinite(value):
            study.tell(trial, value)
        else:
            trial.set_user_attr("diverged", f"validation {metric} is {value}")
            study.tell(trial, state=TrialState.FAIL)
    return _result(study, variant, spec, metric, settings, started)


def _next_trial(study: optuna.Study, sampler_seed: int) -> optuna.Trial:
    """The first trial a killed run left open, else a new one; either way drawn by the sampler of
    its own number, so what it draws does not depend on the kill."""
    open_ = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    number = open_[0].number if open_ else len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(sampler_seed, number)
    if open_:
        return optuna_api.reopen(study, open_[0])
    with quiet():
        return study.ask()


def _result(study: optuna.Study, variant: Variant, spec: DataSpec, metric: str, settings: StudySettings,
            started: float) -> dict[str, Any]:
    finished = finished_trials(study)
    if not any(t.state == TrialState.COMPLETE for t in finished):
        raise DataError(settings.folder, f"no tuning trial of {variant.name} on {spec.label} completed")
    best = search_space(optuna.trial.FixedTrial(study.best_trial.params), variant, spec.task, spec.search)
    entry = {"variant": variant.name, "dataset": spec.label, "task": spec.task, **best}
    complete = sum(t.state == TrialState.COMPLETE for t in finished)
    states = {"complete": complete, "pruned": 0, "diverged": len(finished) - complete}
    info = {"trials": len(finished), "states": states, "stack": 1, "pruner": NO_PRUNER,
            "best_validation": study.best_value, "metric": metric, "best": best, "epochs": 0,
            "seconds": round(sum((t.duration.total_seconds() if t.duration else 0.0) for t in finished), 1),
            "seconds_this_call": round(time.time() - started, 1)}
    return {"entry": entry, "study": study.study_name, "info": info}

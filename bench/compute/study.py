"""One Optuna study per (data set, variant), its trials trained K at a time as one stacked module.

K trials are asked at once, each drawing all of its settings from TPE (constant liar, so they
spread out, as K parallel workers' would). They train as members of one stacked model
(``ncf_core.engine.train.fit_stacked``), each with its own batches, negatives, widths (padded to
the widest) and learning settings; trials that drew another depth or optimizer kind
(``search.SHARED_IN_STACK``) form stacks of their own. Each member reports every epoch to the
pruner and leaves the stack alone when pruned, and each is what training it alone gives, up to
float rounding.

Deterministic and resumable: trial n's draws come from a sampler seeded with (seed, n); the pruner
judges a stack's members against the trials finished before the stack began plus the stack's own
members as they stand in memory, never against what happened to land in storage meanwhile. So a
run killed at any point (SIGKILL, Ctrl-C) and started again re-runs the interrupted stack from its
first epoch, tells only the trials storage still holds as running, and ends with the studies an
uninterrupted run ends with. A study shared by several workers (``bench tune --storage``) cannot
re-run another worker's trials: there the heartbeat marks a dead worker's trials failed and they
are run again with their parameters (``RetryFailedTrialCallback``).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from bench import faults, layout
from bench.compute import optuna_api, progress
from bench.compute.pretrain import PretrainCache, pretrained_neumfs
from bench.compute.pruning import Member, PrunerView, by_structure, fresh, make_pruner
from bench.compute.storage import create_study, keep_protocol, protocol, quiet, storage_for, study_name
from bench.configs import overridden, resolve, split_for
from bench.params import TunedParams
from bench.search import (
    GRACE_S,
    HEARTBEAT_S,
    PRUNERS,
    SAMPLER_SEED,
    TPE_STARTUP,
    TUNE_SEED,
    search_space,
)
from bench.suites import DataSpec
from bench.variants import VARIANTS, Variant
from ncf_core import DataError
from ncf_core.data import Interactions, Split
from ncf_core.engine.seeding import seeded_model
from ncf_core.engine.train import fit_group
from ncf_core.tasks import higher_is_better, task_of


@dataclass(frozen=True)
class StudyJob:
    dataset: int  # index into the run's data sets
    variant: str


@dataclass(frozen=True)
class StudySettings:
    spec: DataSpec
    budget: int  # the study ends with this many finished trials (complete, pruned or diverged)
    stack: int  # trials trained at a time as one stacked module
    folder: str  # the study database and the checkpoints of the tuned GMF/MLP
    device: str = "cpu"
    pruner: str = "median"
    warm: bool = False  # train the tuned model into the checkpoints (a pretrained NeuMF's study starts from it)
    storage: str | None = None  # any SQLAlchemy URL; None: sqlite in ``folder``
    name: str | None = None
    sampler_seed: int = SAMPLER_SEED
    own: bool = True  # the study is this run's alone: trials it finds running are from a run that died
    heartbeat: int = HEARTBEAT_S
    grace: int = GRACE_S


def run_study(job: StudyJob, settings: StudySettings, data: Interactions | Split, *bases: dict[str, Any]) -> dict:
    """The study of ``job`` run to its budget (resumed where it stopped): its best settings as a
    params entry, and what it did. ``bases``: the studies of the GMF and MLP a pretrained NeuMF starts from."""
    started = time.time()
    search = Search(job.variant, settings, data, TunedParams([b["entry"] for b in bases]))
    search.run(until=settings.budget)
    return search.result(started)


class Trials:
    """How a study's trials train: their configs from a trial's settings, their models (a pretrained
    NeuMF from the cache's GMF and MLP), all on the tuning seed's split."""

    def __init__(self, spec: DataSpec, variant: Variant, split: Split, device: str, base: TunedParams,
                 cache: PretrainCache) -> None:
        self.spec, self.variant, self.split, self.device, self.cache = spec, variant, split, device, cache
        self.base = resolve(spec, variant, base)  # a pretrained NeuMF's: with its GMF's and MLP's winners

    def params(self, trial: Any) -> dict[str, dict[str, Any]]:
        return search_space(trial, self.variant, self.spec.task, self.spec.search)

    def configs(self, params: dict[str, dict[str, Any]]):
        return overridden(self.spec, self.base.model, self.base.train, params)

    def build(self, cfgs: list, sparse: bool) -> list[torch.nn.Module]:
        if self.variant.pretrained:
            return pretrained_neumfs(self.cache, self.spec, {TUNE_SEED: self.split},
                                     [TUNE_SEED] * len(cfgs), self.device, cfgs, sparse, self.base.bases)
        return [seeded_model(self.variant.model, c, self.split, TUNE_SEED, self.device, sparse) for c in cfgs]

    def train(self, params: list[dict[str, dict[str, Any]]], on_epoch: Callable[[int, Any], bool] | None = None,
              stack: bool = True) -> list:
        """Trials trained as members of one stack (or one by one): each one's History or Diverged."""
        return self._fit(params, on_epoch, stack)[0]

    def trained(self, params: dict[str, dict[str, Any]]) -> torch.nn.Module:
        """One trial's model, trained alone, at its best validation epoch."""
        outcomes, models = self._fit([params], None, False)
        if isinstance(outcomes[0], Exception):
            raise DataError(self.spec.source, f"the best settings of {self.variant.name} diverged: {outcomes[0]}")
        return models[0]

    def _fit(self, params: list[dict[str, dict[str, Any]]], on_epoch: Callable[[int, Any], bool] | None,
             stack: bool) -> tuple[list, list[torch.nn.Module]]:
        cfgs = [self.configs(p) for p in params]
        models = self.build([c[0] for c in cfgs], cfgs[0][1].sparse)
        outcomes, _ = fit_group(models, [self.split] * len(params), [c[1] for c in cfgs], self.device,
                                [TUNE_SEED] * len(params), on_epoch=on_epoch, stack_members=stack)
        return outcomes, models


class Search:
    """A study and its trials: the loop of ask (a stack), train, tell."""

    def __init__(self, variant: str, settings: StudySettings, data: Interactions | Split, base: TunedParams) -> None:
        self.settings, self.spec, self.variant = settings, settings.spec, VARIANTS[variant]
        folder = Path(settings.folder)
        self.trials = Trials(self.spec, self.variant, split_for(self.spec, data, TUNE_SEED), settings.device, base,
                             PretrainCache(folder / layout.CHECKPOINTS))
        self.metric = task_of(self.spec.task).selection_metric(self.spec.train.k)
        self.name = settings.name or study_name(self.spec, variant)
        storage = storage_for(settings.storage or f"sqlite:///{folder / layout.STUDIES}",
                              settings.heartbeat, settings.grace, shared=not settings.own)
        self.study = create_study(self.name, storage,
                                  direction="maximize" if higher_is_better(self.metric) else "minimize",
                                  pruner=make_pruner(settings.pruner))
        if settings.own:  # resumed under another protocol, it would end as a mix of two searches
            keep_protocol(self.study, protocol(settings, torch.get_num_threads()), folder / layout.STUDIES,
                          f"the {variant} study on {self.spec.label}")
        self.on_told: Callable[[FrozenTrial], None] = lambda t: None

    def finished(self) -> list[FrozenTrial]:
        return finished_trials(self.study)

    def run(self, until: int | None = None, n_trials: int | None = None, timeout: float | None = None) -> None:
        """Stacks until the study holds ``until`` finished trials, or this call has run ``n_trials``."""
        deadline = None if timeout is None else time.time() + timeout
        ran = 0
        while deadline is None or time.time() < deadline:
            need = (until - len(self.finished())) if until is not None else n_trials - ran
            if need <= 0 and not self._interrupted():
                return
            members = self._ask(max(need, 0))
            for group in by_structure(members):
                self._train(group)
            ran += sum(m.trial is not None for m in members)

    def _interrupted(self) -> list[FrozenTrial]:
        """In a study of this run's own: the stack a dead run left behind, from its first open trial on."""
        if not self.settings.own:
            return []
        trials = self.study.get_trials(deepcopy=False)
        open_ = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        return [t for t in trials if open_ and t.number >= min(open_)]

    def _ask(self, need: int) -> list[Member]:
        interrupted = self._interrupted()
        first = interrupted[0].number if interrupted else len(self.study.get_trials(deepcopy=False))
        before = sum(t.number < first for t in self.finished())
        size = min(self.settings.stack, self.settings.budget - before if self.settings.own else need)
        members = []
        for t in interrupted:
            if t.state == TrialState.RUNNING:  # what it has not drawn yet, drawn by its own (seed, n) sampler
                self.study.sampler = make_sampler(self.settings.sampler_seed, t.number)
                members.append(self._member(optuna_api.reopen(self.study, t)))
            elif t.state != TrialState.WAITING:  # finished before the kill: trained again for its stack-mates
                members.append(Member(None, fresh(t), self.trials.params(optuna.trial.FixedTrial(t.params))))
        if not self.settings.own:
            with quiet():
                optuna.storages.fail_stale_trials(self.study)
        while len(members) < size:
            members.append(self._member(ask_member(self.study, self.settings.sampler_seed)))
        return members

    def _member(self, trial: optuna.Trial) -> Member:
        faults.point("asked")  # asked, nothing drawn yet: a kill here leaves a RUNNING trial without params
        with quiet():
            params = self.trials.params(trial)
        trial.set_user_attr("config", json.loads(json.dumps(params, default=list)))
        return Member(trial, fresh(optuna_api.stored(self.study, trial)), params)

    def _train(self, members: list[Member]) -> None:
        first = min(m.frozen.number for m in members)
        history = [t for t in self.study.get_trials(deepcopy=True) if t.state.is_finished() and t.number < first]
        view = PrunerView(self.study, history, members, make_pruner(self.settings.pruner))

        def on_epoch(index: int, stats: Any) -> bool:
            member = members[index]
            member.frozen.intermediate_values[stats.epoch] = stats.valid_metric
            if member.running(self.study):
                with quiet():
                    member.trial.report(stats.valid_metric, stats.epoch)
            progress.epoch()
            faults.point("study-epoch")
            member.pruned = view.judge(member)
            return not member.pruned

        with _heartbeats(members, self.study, not self.settings.own):
            outcomes = self.trials.train([m.params for m in members], on_epoch, stack=self.settings.stack > 1)
        for member, outcome in zip(members, outcomes):
            if not member.running(self.study):
                continue
            value = float("nan") if isinstance(outcome, Exception) else outcome.best_value
            if isinstance(outcome, Exception) or not math.isfinite(value):
                member.trial.set_user_attr("diverged", str(outcome) if isinstance(outcome, Exception) else
                                           f"validation {self.metric} is {value}")
                self.study.tell(member.trial, state=TrialState.FAIL)
            elif member.pruned:
                self.study.tell(member.trial, state=TrialState.PRUNED)
            else:
                self.study.tell(member.trial, value)
            self.on_told(optuna_api.stored(self.study, member.trial))

    def best(self) -> dict[str, dict[str, Any]]:
        """The best trial's settings, re-created through the search space."""
        if not any(t.state == TrialState.COMPLETE for t in self.finished()):
            raise DataError(self.settings.folder,
                            f"no tuning trial of {self.variant.name} on {self.spec.label} completed")
        return self.trials.params(optuna.trial.FixedTrial(self.study.best_trial.params))

    def result(self, started: float) -> dict[str, Any]:
        params = self.best()
        entry = {"variant": self.variant.name, "dataset": self.spec.label, "task": self.spec.task, **params}
        if self.settings.warm:  # the tuned GMF/MLP a pretrained NeuMF's study starts from
            winner = resolve(self.spec, self.variant, TunedParams([entry]))
            self.trials.cache.models(self.variant.name, self.spec, {TUNE_SEED: self.trials.split}, [TUNE_SEED],
                                     self.settings.device, winner.model, winner.train)
        finished = self.finished()
        states = {s.name.lower(): sum(t.state == s for t in finished) for s in (TrialState.COMPLETE, TrialState.PRUNED)}
        states["diverged"] = len(finished) - sum(states.values())
        info = {"trials": len(finished), "states": states, "stack": self.settings.stack,
                "pruner": PRUNERS[self.settings.pruner], "best_validation": self.study.best_value,
                "metric": self.metric, "best": params,
                "epochs": sum(len(t.intermediate_values) for t in finished),
                "seconds": round(sum((t.duration.total_seconds() if t.duration else 0.0) for t in finished), 1),
                "seconds_this_call": round(time.time() - started, 1)}
        return {"entry": entry, "study": self.name, "info": info}


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that count against the budget: complete, pruned, or diverged (a setting's outcome);
    not those failed because their worker died (they run again)."""
    return [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and "diverged" in t.user_attrs)]


def make_sampler(seed: int, number: int) -> optuna.samplers.BaseSampler:
    """TPE for trial ``number``, seeded by (seed, number): the draws of a trial do not depend on how
    many samplers this process made before it (a resumed study draws what an uninterrupted one does)."""
    own = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
    with quiet():
        return optuna.samplers.TPESampler(seed=own, constant_liar=True, n_startup_trials=TPE_STARTUP)


def ask_member(study: optuna.Study, sampler_seed: int) -> optuna.Trial:
    """The next trial, drawn by its own (seed, n) sampler; a trial the study holds waiting (a retried
    one) is asked first."""
    trials = study.get_trials(deepcopy=False)
    waiting = [t.number for t in trials if t.state == TrialState.WAITING]
    study.sampler = make_sampler(sampler_seed, min(waiting) if waiting else len(trials))
    with quiet():
        return study.ask()


def foreseen_trials(variant: str, task: str, space: str, budget: int, stack: int,
                    sampler_seed: int = SAMPLER_SEED) -> list[dict[str, dict[str, Any]] | None]:
    """The settings a fresh study's trials will train, in order, where they are known before anything
    trains: TPE draws at random from (seed, n) until TPE_STARTUP trials have finished, whatever their
    values, so a plan can price the stacks the search will train instead of its space's average
    (Rendle's MF spans ~50x). None for a trial asked later: TPE then follows the values."""
    study = create_study("foreseen", optuna.storages.InMemoryStorage())
    out: list[dict[str, dict[str, Any]] | None] = []
    while len(out) < budget:
        size = min(stack, budget - len(out))
        if len(out) >= TPE_STARTUP:  # every earlier trial has finished (complete or pruned) by now
            out += [None] * size
            continue
        trials: list[optuna.Trial] = []
        for _ in range(size):
            trial = ask_member(study, sampler_seed)
            with quiet():
                out.append(search_space(trial, VARIANTS[variant], task, space))
            trials.append(trial)
        for trial in trials:
            study.tell(trial, state=TrialState.PRUNED)
    return out


@contextlib.contextmanager
def _heartbeats(members: list[Member], study: optuna.Study, on: bool) -> Iterator[None]:
    """A shared study's running trials beat while they train, so that other workers know them alive."""
    threads = [optuna_api.heartbeat(study, m.trial) for m in members if on and m.trial]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for t in threads:
            t.join()

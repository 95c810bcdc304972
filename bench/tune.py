"""``bench tune``: an Optuna study per (data set, variant) on the validation split.

The objective is the best validation value of one training run (seed 0 split); the test split
is never read until the study ends, when the best settings are evaluated on it once.
Any SQLAlchemy URL works as storage, so many workers on many machines can share one study.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import torch

from bench import params as tuned_params
from bench.params import TunedParams
from bench.pool import Task, run_tasks
from bench.pretrain import PretrainCache, pretrained_neumf
from bench.runner import (
    RunOptions,
    fit_group,
    overridden,
    resolve_datasets,
    resolve_devices,
    split_for,
    training_pairs,
    variant_configs,
)
from bench.suites import PRETRAIN_BASES, SUITES, VARIANTS, DataSpec, Variant, chain_rank, search_space
from ncf_core import DataError
from ncf_core.data import Split
from ncf_core.evaluate import Evaluator
from ncf_core.tasks import higher_is_better, task_of
from ncf_core.train import Diverged, fit, seeded_model

SEED = 0


class Objective:
    """Train with a trial's settings; report the validation metric every epoch for pruning.

    A pretrained NeuMF starts from the GMF and MLP of the pretraining cache, trained with ``base``
    (tuned settings for them, or the data set's defaults), and tunes only what is its own.
    """

    def __init__(self, spec: DataSpec, split: Split, variant: Variant, device: str = "cpu",
                 base: TunedParams | None = None, cache: PretrainCache | None = None, seed: int = SEED) -> None:
        self.spec, self.split, self.variant, self.device = spec, split, variant, device
        self.base = base or TunedParams()
        self.cache = cache or PretrainCache()
        self.seed = seed

    def configs(self, params: dict[str, dict[str, Any]]):
        model_cfg, train_cfg = variant_configs(self.spec, self.variant, self.base)
        return overridden(self.spec, model_cfg, train_cfg, params)

    def build(self, model_cfg) -> torch.nn.Module:
        if not self.variant.pretrained:
            return seeded_model(self.variant.model, model_cfg, self.split, self.seed, self.device)
        base = {}
        for name in ("gmf", "mlp"):
            cfg, train = variant_configs(self.spec, VARIANTS[name], self.base)
            base[name] = self.cache.models(name, self.spec.label, self.spec.task, {self.seed: self.split},
                                           [self.seed], self.device, cfg, train,
                                           lambda *a: fit_group(*a)[0])[self.seed]
        return pretrained_neumf(base["gmf"], base["mlp"], model_cfg, self.split).to(self.device)

    def train(self, params: dict[str, dict[str, Any]], on_epoch=None) -> tuple[torch.nn.Module, float]:
        model_cfg, train_cfg = self.configs(params)
        model = self.build(model_cfg)
        history = fit(model, self.split, train_cfg, self.device, seed=self.seed, on_epoch=on_epoch)
        return model, history.best_value

    def __call__(self, trial: optuna.Trial) -> float:
        params = search_space(trial, self.variant, self.spec.task, self.spec.search)

        def report(stats) -> None:
            trial.report(stats.valid_metric, stats.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {stats.epoch}")

        trial.set_user_attr("config", json.loads(json.dumps(params, default=list)))
        _, value = self.train(params, on_epoch=report)
        if not math.isfinite(value):
            raise Diverged(f"validation metric is {value}")
        return value


HEARTBEAT_S, GRACE_S, MAX_RETRY = 10, 30, 2


def storage_for(url: str, heartbeat: float = HEARTBEAT_S, grace: float = GRACE_S) -> optuna.storages.BaseStorage:
    """An RDB storage with Optuna's heartbeat: a worker that dies mid-trial (SIGKILL, a lost machine)
    stops beating, and after ``grace`` seconds the next worker marks its trial FAIL and re-queues
    its parameters (up to MAX_RETRY times) instead of leaving it RUNNING forever. SQLite waits for
    the lock instead of failing when several workers write at once."""
    kwargs: dict[str, Any] = {"heartbeat_interval": heartbeat, "grace_period": grace}
    with warnings.catch_warnings():  # "experimental" in optuna's words since 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
            kwargs["heartbeat_stale_trial_callback"] = optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY)
        else:
            kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRY)
    if url.startswith("sqlite:///"):
        try:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(url, f"cannot create the database's folder ({err.strerror})") from None
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in optuna's words since 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except sqlalchemy.exc.ArgumentError:
            raise DataError(url, "not a database URL (e.g. sqlite:///path/optuna.db, postgresql://...)") from None
        except ImportError as err:
            raise DataError(url, f"no database driver for this URL: {err}") from None
        except sqlalchemy.exc.SQLAlchemyError as err:
            # Workers started together race to create the schema; the loser finds it made.
            if attempt == 4:
                raise DataError(url, f"cannot open the study storage: {str(err.orig if hasattr(err, 'orig') else err)}"
                                     .splitlines()[0]) from None
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def create_study(name: str, storage: optuna.storages.BaseStorage, **kwargs: Any) -> optuna.Study:
    for attempt in range(5):
        try:
            return optuna.create_study(study_name=name, storage=storage, load_if_exists=True, **kwargs)
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == 4:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def best_params(study: optuna.Study, objective: Objective) -> dict[str, dict[str, Any]]:
    """Re-create the best trial's config through the same search-space function."""
    fixed = optuna.trial.FixedTrial(study.best_trial.params)
    return search_space(fixed, objective.variant, objective.spec.task, objective.spec.search)


def tune_markdown(study: optuna.Study, payload: dict[str, Any]) -> str:
    states = [t.state for t in study.trials]
    count = {s.name.lower(): states.count(s) for s in optuna.trial.TrialState}
    lines = [f"# Optuna study `{study.study_name}`", "",
             f"- data set: {payload['dataset']} ({payload['task']}); variant: {payload['variant']}",
             f"- objective: validation {payload['metric']} ({study.direction.name.lower()}), split seed {SEED}",
             f"- trials: {count['complete']} complete, {count['pruned']} pruned, {count['fail']} failed "
             f"(a failed trial of a dead worker is retried), {count['running']} running, {count['waiting']} waiting",
             f"- best validation {payload['metric']}: {payload['best_value']:.5f} (trial {study.best_trial.number})",
             "- best settings on the **test** split (evaluated once, after the study): "
             + ", ".join(f"{k} = {v:.4f}" for k, v in payload["test_metrics"].items()),
             "", "## Best parameters", "", "```json", json.dumps(study.best_trial.params, indent=2), "```", ""]
    try:
        importance = optuna.importance.get_param_importances(study)
        lines += ["## Parameter importance (fANOVA)", "", "| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importance.items()]
    except (RuntimeError, ValueError) as err:
        lines += [f"Parameter importance not available: {err}"]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    if args.variant not in VARIANTS:
        raise DataError("--variant", f"unknown variant {args.variant!r}; known: {list(VARIANTS)}")
    [device] = resolve_devices((args.device,))
    opts = RunOptions(data_dir=Path(args.data_dir) if args.data_dir else None, datasets=(args.dataset,),
                      epochs=args.epochs)
    [(spec, data)] = resolve_datasets(SUITES["quick"], opts, log=print)
    split = split_for(spec, data, SEED)
    variant = VARIANTS[args.variant]
    name = args.study or f"{spec.label.replace('/', '_')}-{spec.task}-{variant.name}"
    out = Path(args.out or f"results/tune-{name}")
    if out.exists() and not out.is_dir():
        raise DataError(out, "is a file, not a folder")
    storage = args.storage or f"sqlite:///{out / 'optuna.db'}"
    args.out_dir = out
    objective = Objective(spec, split, variant, device, cache=PretrainCache(out / "checkpoints"))
    metric = task_of(spec.task).selection_metric(spec.train.k)
    direction = "maximize" if higher_is_better(metric) else "minimize"
    study = create_study(
        name, storage_for(storage, getattr(args, "heartbeat", HEARTBEAT_S), getattr(args, "grace", GRACE_S)),
        direction=direction, sampler=optuna.samplers.TPESampler(seed=args.sampler_seed), pruner=_pruner(),
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.time()
    workers = getattr(args, "workers", 1)
    if workers > 1:
        _run_workers(args, workers, name, storage)
    else:
        study.optimize(objective, n_trials=args.trials, timeout=args.timeout, catch=(Diverged,),
                       callbacks=[_print_trial])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise DataError(storage, f"study {name!r} has no complete trial")
    if getattr(args, "worker_only", False):
        return 0  # the process that started this worker reads the best settings

    params = best_params(study, objective)
    model, _ = objective.train(params)  # the one and only look at the test split
    test_metrics = Evaluator(split, "test", device, k=spec.train.k).evaluate(model).metrics
    model_cfg, train_cfg = objective.configs(params)
    own = {"model": {k: v for k, v in asdict(model_cfg).items() if k in params["model"]},
           "train": {k: v for k, v in asdict(train_cfg).items() if k in params["train"]}}
    payload = {"dataset": spec.label, "task": spec.task, "variant": variant.name, "study": name,
               "storage": storage, "direction": direction, "metric": metric,
               "best_value": study.best_value, "best_trial": study.best_trial.number,
               "test_metrics": test_metrics, "seconds": time.time() - started,
               "variants": {variant.name: own}}
    tuned_params.write(out / "best_params.json", payload)
    study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    (out / "tune.md").write_text(tune_markdown(study, payload))
    print(f"best validation {payload['metric']} {study.best_value:.5f}; test "
          + ", ".join(f"{k}={v:.4f}" for k, v in test_metrics.items()))
    print(f"wrote best_params.json, trials.csv, tune.md to {out}")
    return 0


def _run_workers(args: argparse.Namespace, workers: int, study: str, storage: str) -> None:
    """``--workers N``: N local worker processes on the one study (sampler seeds seed, seed+1, ...),
    each running ``--trials``; the best settings are read once they are all done."""
    import subprocess
    import sys

    argv = ["tune", "--dataset", args.dataset, "--variant", args.variant, "--trials", str(args.trials),
            "--device", args.device, "--storage", storage, "--study", study, "--out", str(args.out_dir),
            "--heartbeat", str(args.heartbeat), "--grace", str(args.grace), "--workers", "1", "--worker-only"]
    for flag, value in (("--data-dir", args.data_dir), ("--epochs", args.epochs), ("--timeout", args.timeout)):
        if value is not None:
            argv += [flag, str(value)]
    procs = [subprocess.Popen([sys.executable, "-m", "bench", *argv, "--sampler-seed", str(args.sampler_seed + i)])
             for i in range(workers)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise DataError(storage, f"a tuning worker failed (exit codes {codes})")


def _print_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    value = "" if trial.value is None else f" value {trial.value:.5f}"
    print(f"trial {trial.number:>3} {trial.state.name.lower():<8}{value} {trial.params}")


TUNE_SEED = 1_000_003  # the tuning split's seed: none of a run's evaluation seeds (0..N-1)
SAMPLER_SEED = 0
STARTUP_TRIALS, WARMUP_EPOCHS = 3, 1
PRUNER = f"median ({STARTUP_TRIALS} start-up trials, {WARMUP_EPOCHS} warm-up epoch{'s' * (WARMUP_EPOCHS > 1)})"


def _pruner() -> optuna.pruners.BasePruner:
    """No trial is pruned on its first WARMUP_EPOCHS epochs. Epochs count from 1 and Optuna prunes a
    step unless ``step < n_warmup_steps``, hence the + 1 (without it, nothing was warm-up)."""
    return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=WARMUP_EPOCHS + 1)


def tune_suite(specs: list[tuple[DataSpec, Any]], variants: tuple[str, ...], budget: int, folder: Path,
               device: str = "cpu", log=print, jobs: int = 1, threads: int = 1) -> tuple[TunedParams, dict[str, Any]]:
    """Equal tuning budgets (Rendle et al. 2020): every (data set, variant) gets its own study of
    ``budget`` trials with the same sampler seed and pruner, on the validation split of a tuning seed
    that is none of the evaluation seeds. GMF and MLP are tuned first; the pretrained NeuMFs then
    start from the tuned GMF and MLP and tune only what is theirs (alpha, the fine-tuning step).
    Studies live in ``folder`` (SQLite), so a rerun resumes them; finished trials of any state count
    against the budget.

    Studies are independent but for that dependency, so ``jobs`` worker processes run them side by
    side; each study is sequential, so its trials and best settings do not depend on ``jobs``.
    """
    tuned = TunedParams()
    info: dict[str, Any] = {"budget": budget, "sampler": f"TPE, seed {SAMPLER_SEED}", "pruner": PRUNER,
                            "split_seed": TUNE_SEED, "studies": {}}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warm = any(VARIANTS[v].pretrained for v in variants)
    # The long chains first, every data set's (largest first): GMF and MLP, then the pretrained
    # NeuMFs that wait for them; the studies nothing waits for fill the gaps after.
    last = chain_rank("")
    by_size = sorted(range(len(specs)), key=lambda i: -training_pairs(*specs[i]))
    ordered = [(i, v) for i in by_size for v in sorted(variants, key=chain_rank) if chain_rank(v) < last]
    ordered += [(i, v) for i in by_size for v in variants if chain_rank(v) == last]
    tasks = []
    for i, name in ordered:
        spec, data = specs[i]
        bases = tuple((i, b) for b in PRETRAIN_BASES if b in variants) if VARIANTS[name].pretrained else ()

        def args(results, spec=spec, data=data, name=name, bases=bases):
            entries = [results[b]["entry"] for b in bases]
            return (spec, data, name, budget, str(folder), device, entries, warm and name in PRETRAIN_BASES)

        tasks.append(Task((i, name), tune_study, args, bases))
    log(f"tuning: {len(tasks)} studies of {budget} trials"
        + (f", {jobs} at a time ({threads} thread{'s' * (threads > 1)} each)" if jobs > 1 else ""))
    done = {}
    for task, result in run_tasks(tasks, jobs, threads,
                                  started=lambda t: log(f"tuning {t.key[1]} on {specs[t.key[0]][0].label}")):
        done[task.key] = result
        spec = specs[task.key[0]][0]
        log(f"tuned {task.key[1]} on {spec.label}: best validation {result['info']['metric']} "
            f"{result['info']['best_validation']:.5f} after {result['info']['trials']} trials "
            f"({result['info']['seconds_this_call']:.0f} s)")
    for i in range(len(specs)):  # the manifest in the data sets' and variants' order
        for name in sorted(variants, key=lambda v: VARIANTS[v].pretrained):
            tuned.entries.append(done[i, name]["entry"])
            info["studies"][done[i, name]["study"]] = done[i, name]["info"]
    return tuned, info


def tune_study(spec: DataSpec, data: Any, name: str, budget: int, folder: str, device: str,
               bases: list[dict[str, Any]], warm: bool) -> dict[str, Any]:
    """One (data set, variant) study, in this process or a pool worker: resumes what is stored, runs
    the rest of the budget, and with ``warm`` trains the tuned GMF/MLP a pretrained NeuMF starts from
    into the checkpoint cache, so the two pretrained studies do not both train it."""
    storage = storage_for(f"sqlite:///{Path(folder) / 'studies.db'}")
    cache = PretrainCache(Path(folder) / "checkpoints")
    split = split_for(spec, data, TUNE_SEED)
    metric = task_of(spec.task).selection_metric(spec.train.k)
    variant = VARIANTS[name]
    study_name = f"{spec.label.replace('/', '_')}-{spec.task}-{name}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = create_study(study_name, storage, direction="maximize" if higher_is_better(metric) else "minimize",
                         sampler=optuna.samplers.TPESampler(seed=SAMPLER_SEED), pruner=_pruner())
    done = [t for t in study.trials if t.state.is_finished()]
    started = time.time()
    objective = Objective(spec, split, variant, device, base=TunedParams(list(bases)), cache=cache, seed=TUNE_SEED)
    if len(done) < budget:
        study.optimize(objective, n_trials=budget - len(done), catch=(Diverged,))
    finished = [t for t in study.trials if t.state.is_finished()]
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in finished):
        raise DataError(folder, f"no tuning trial of {name} on {spec.label} completed")
    params = best_params(study, objective)
    entry = {"variant": name, "dataset": spec.label, "task": spec.task, **params}
    if warm:
        cfg, train = variant_configs(spec, variant, TunedParams([entry]))
        cache.models(name, spec.label, spec.task, {TUNE_SEED: split}, [TUNE_SEED], device, cfg, train,
                     lambda *a: fit_group(*a)[0])
    info = {"trials": len(finished), "best_validation": study.best_value, "metric": metric, "best": params,
            "seconds": round(sum((t.duration.total_seconds() if t.duration else 0.0) for t in finished), 1),
            "seconds_this_call": round(time.time() - started, 1)}
    return {"entry": entry, "study": study_name, "info": info}

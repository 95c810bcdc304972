"""``bench tune``: one Optuna study of one variant on one data set, on the validation split.

The same studies a tuned ``bench run`` runs (``bench.compute.study``: trials stacked K at a time,
pruned alone), here on any SQLAlchemy storage that several workers on several machines may share;
the test split is read once, after the study, with the best settings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from tqdm import tqdm

from bench import layout
from bench import params as tuned_params
from bench.compute.storage import study_name
from bench.compute.study import Search, StudySettings
from bench.run.datasets import resolve_datasets
from bench.run.options import RunOptions, resolve_devices
from bench.run.plan import study_stack
from bench.search import PRUNERS, TUNE_SEED
from bench.suites import SUITES
from bench.variants import VARIANTS
from ncf_core import DataError
from ncf_core.evaluate import Evaluator


def execute(args: argparse.Namespace) -> int:
    if args.variant not in VARIANTS:
        raise DataError("--variant", f"unknown variant {args.variant!r}; known: {list(VARIANTS)}")
    if VARIANTS[args.variant].reference:
        raise DataError("--variant", f"{args.variant} is a reference baseline: tune it inside a run, "
                                     f"`bench run --tune N --variants {args.variant},...`")
    if args.pruner not in PRUNERS:
        raise DataError("--pruner", f"unknown pruner {args.pruner!r}; known: {list(PRUNERS)}")
    [device] = resolve_devices((args.device,))
    opts = RunOptions(data_dir=Path(args.data_dir) if args.data_dir else None, datasets=(args.dataset,),
                      epochs=args.epochs, strict_files=args.strict_files)
    [(spec, data)] = resolve_datasets(SUITES["quick"], opts, log=print)
    name = args.study or study_name(spec, args.variant)
    out = Path(args.out or f"results/tune-{name}")
    if out.exists() and not out.is_dir():
        raise DataError(out, "is a file, not a folder")
    storage = args.storage or f"sqlite:///{out / layout.STUDIES}"
    # As bench run --tune stacks, on the study's own database; one at a time where other workers may share
    # the study (a stack enqueues its members' structure, and another worker may take one of them).
    shared = args.storage is not None or args.workers > 1
    stack = study_stack(spec, data, args.trials, (device,), 1 if shared and args.stack is None else args.stack)
    settings = StudySettings(spec, budget=args.trials, stack=stack, folder=str(out), device=device,
                             pruner=args.pruner, storage=storage, name=name, sampler_seed=args.sampler_seed,
                             own=False, heartbeat=args.heartbeat, grace=args.grace)
    started = time.time()
    search = Search(args.variant, settings, data, tuned_params.TunedParams())
    if args.workers > 1:
        _run_workers(args, name, storage, out, stack)
    else:
        with tqdm(total=args.trials, unit="trial", desc=f"{args.variant} on {spec.label}", dynamic_ncols=True,
                  bar_format="{desc}: {n}/{total} trials {percentage:3.0f}%|{bar}| {elapsed} elapsed, "
                             "about {remaining} left") as bar:
            search.on_told = lambda t: (bar.write(_trial_line(t)), bar.update())
            search.run(n_trials=args.trials, timeout=args.timeout)
    if args.worker_only:
        return 0  # the process that started this worker reads the best settings
    params = search.best()
    model_cfg, train_cfg = search.trials.configs(params)
    model = search.trials.trained(params)  # the one and only look at the test split follows
    test_metrics = Evaluator(search.trials.split, "test", device, k=spec.train.k).evaluate(model).metrics
    own = {"model": {k: v for k, v in asdict(model_cfg).items() if k in params["model"]},
           "train": {k: v for k, v in asdict(train_cfg).items() if k in params["train"]}}
    study = search.study
    payload = {"dataset": spec.label, "task": spec.task, "variant": args.variant, "study": name, "storage": storage,
               "direction": study.direction.name.lower(), "metric": search.metric, "best_value": study.best_value,
               "best_trial": study.best_trial.number, "test_metrics": test_metrics, "split_seed": TUNE_SEED,
               "trials": sum(t.state.is_finished() for t in study.trials),
               "stack": stack, "pruner": PRUNERS[args.pruner], "seconds": time.time() - started,
               "variants": {args.variant: own}}
    tuned_params.write(out / "best_params.json", payload)
    study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    (out / "tune.md").write_text(tune_markdown(study, payload, search))
    print(f"best validation {payload['metric']} {study.best_value:.5f}; test "
          + ", ".join(f"{k}={v:.4f}" for k, v in test_metrics.items()))
    print(f"wrote best_params.json, trials.csv, tune.md to {out}")
    return 0


def tune_markdown(study: optuna.Study, payload: dict[str, Any], search: Search) -> str:
    states = [t.state for t in study.trials]
    count = {s.name.lower(): states.count(s) for s in optuna.trial.TrialState}
    diverged = sum(1 for t in study.trials if "diverged" in t.user_attrs)
    lines = [f"# Optuna study `{study.study_name}`", "",
             f"- data set: {payload['dataset']} ({payload['task']}); variant: {payload['variant']}",
             f"- objective: validation {payload['metric']} ({study.direction.name.lower()}), split seed {TUNE_SEED}",
             f"- trials: {count['complete']} complete, {count['pruned']} pruned, {diverged} diverged, "
             f"{count['fail'] - diverged} failed (a dead worker's, retried), {count['running']} running, "
             f"{count['waiting']} waiting; {payload['stack']} at a time; pruner {payload['pruner']}",
             f"- best validation {payload['metric']}: {payload['best_value']:.5f} (trial {study.best_trial.number})",
             "- best settings on the **test** split (evaluated once, after the study): "
             + ", ".join(f"{k} = {v:.4f}" for k, v in payload["test_metrics"].items()),
             "", "## Best parameters", "", "```json", json.dumps(study.best_trial.params, indent=2), "```", ""]
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in study.trials:  # what the study searched: every parameter any trial drew, as drawn
        space.update(trial.distributions)
    lines += ["## Search space", "", "| parameter | searched |", "|---|---|"]
    lines += [f"| {k} | {_distribution(v)} |" for k, v in sorted(space.items())] + [""]
    try:
        with warnings.catch_warnings():  # too few trials: equal importances, said below instead
            warnings.simplefilter("error", UserWarning)
            importance = optuna.importance.get_param_importances(study)
        lines += ["## Parameter importance (fANOVA)", "",
                  f"From {count['complete']} complete trials: with fewer than about 20 an importance is mostly "
                  "noise, and TPE's draws are not a designed experiment.", "",
                  "| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importance.items()]
    except (RuntimeError, ValueError, UserWarning) as err:
        lines += [f"Parameter importance not available: {err}"]
    return "\n".join(lines) + "\n"


def _run_workers(args: argparse.Namespace, study: str, storage: str, out: Path, stack: int) -> None:
    """``--workers N``: N local worker processes on the one study (sampler seeds seed, seed+1, ...),
    each running ``--trials``; the best settings are read once they are all done."""
    argv = ["tune", "--dataset", args.dataset, "--variant", args.variant, "--trials", str(args.trials),
            "--device", args.device, "--storage", storage, "--study", study, "--out", str(out),
            "--heartbeat", str(args.heartbeat), "--grace", str(args.grace), "--workers", "1", "--worker-only",
            "--stack", str(stack), "--pruner", args.pruner]
    for flag, value in (("--data-dir", args.data_dir), ("--epochs", args.epochs), ("--timeout", args.timeout)):
        if value is not None:
            argv += [flag, str(value)]
    procs = [subprocess.Popen([sys.executable, "-m", "bench", *argv, "--sampler-seed", str(args.sampler_seed + i)])
             for i in range(args.workers)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise DataError(storage, f"a tuning worker failed (exit codes {codes})")


def _trial_line(trial: optuna.trial.FrozenTrial) -> str:
    value = "" if trial.value is None else f" value {trial.value:.5f}"
    return f"trial {trial.number:>3} {trial.state.name.lower():<8}{value} {trial.params}"


def _distribution(d: optuna.distributions.BaseDistribution) -> str:
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return "one of " + ", ".join(map(str, d.choices))
    kind = "integer" if isinstance(d, optuna.distributions.IntDistribution) else "float"
    step = f", step {d.step}" if getattr(d, "step", None) not in (None, 1) else ""
    return f"{kind} in [{d.low}, {d.high}]" + (", log scale" if d.log else "") + step

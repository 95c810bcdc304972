"""The report's view of a tuned run's studies: each study's best validation value so far, by trial
and by wall time (one figure per data set), and the settings each variant's study chose, in the
summary beside the verdict they produced. Read from the run's study database, writing nothing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from bench import layout  # noqa: E402
from bench.compute.storage import quiet, storage_for  # noqa: E402
from bench.search import STRUCTURAL  # noqa: E402

Key = tuple[str, str]  # (data set label, task)


def load_studies(db: Path, keys: list[tuple[str, str, str]]) -> dict[Key, dict[str, optuna.Study]]:
    """The studies of (data set, task, variant) ``keys`` that the database holds, by data set."""
    if not db.is_file():
        return {}
    storage = storage_for(f"sqlite:///{db}", shared=False)
    with quiet():
        names = set(optuna.get_all_study_names(storage))
        out: dict[Key, dict[str, optuna.Study]] = {}
        for dataset, task, variant in keys:
            name = f"{layout.file_label(dataset)}-{task}-{variant}"
            if name in names:
                out.setdefault((dataset, task), {})[variant] = optuna.load_study(study_name=name, storage=storage)
    return out


def _best_so_far(study: optuna.Study) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(trial numbers, seconds since the study began, best value so far) over its complete trials."""
    done = sorted((t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None),
                  key=lambda t: t.number)
    if not done:
        return np.array([]), np.array([]), np.array([])
    start = min(t.datetime_start for t in study.trials if t.datetime_start)
    values = np.array([t.value for t in done])
    best = np.maximum.accumulate(values) if study.direction == optuna.study.StudyDirection.MAXIMIZE \
        else np.minimum.accumulate(values)
    seconds = np.array([(t.datetime_complete - start).total_seconds() for t in done])
    return np.array([t.number for t in done]), seconds, best


def write_tuning_plots(studies: dict[Key, dict[str, optuna.Study]], folder: Path) -> list[Path]:
    paths = []
    for (dataset, task), by_variant in studies.items():
        fig, (by_trial, by_time) = plt.subplots(1, 2, figsize=(10, 3.6))
        runs = {variant: _best_so_far(study) for variant, study in by_variant.items()}
        longest = max((float(s.max()) for _, s, _ in runs.values() if len(s)), default=0.0)
        unit, scale = ("minutes", 60.0) if longest > 120 else ("seconds", 1.0)
        for variant, (numbers, seconds, best) in runs.items():
            if len(best):
                by_trial.step(numbers, best, where="post", marker="o", markersize=3, label=variant)
                by_time.step(seconds / scale, best, where="post", marker="o", markersize=3, label=variant)
        by_trial.xaxis.set_major_locator(MaxNLocator(integer=True))
        by_trial.set(xlabel="trial", ylabel="best validation value so far", title=f"{dataset} ({task}): by trial")
        by_time.set(xlabel=f"{unit} since the study began", title="by wall time")
        by_trial.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"tuning-{layout.file_label(dataset)}-{task}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def _params(trial: FrozenTrial) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in trial.params.items())


def structures_tried(by_variant: dict[str, optuna.Study]) -> dict[str, int]:
    """Distinct structures (``search.STRUCTURAL``) among each study's trials: the budget counts
    trials, and a space with few structures repeats them."""
    return {variant: len({tuple(t.params.get(k) for k in STRUCTURAL) for t in study.trials if t.params})
            for variant, study in by_variant.items()}


def chosen_lines(by_variant: dict[str, optuna.Study]) -> list[str]:
    """A table of what each study chose: the trials behind it and the winner's settings."""
    rows = ["| variant | trials (complete / pruned / failed) | structures tried | best validation | chosen settings |",
            "|---|---|---|---|---|"]
    tried = structures_tried(by_variant)
    for variant, study in by_variant.items():
        states = [t.state for t in study.trials]
        count = f"{states.count(TrialState.COMPLETE)} / {states.count(TrialState.PRUNED)} / " \
                f"{states.count(TrialState.FAIL)}"
        structures = tried[variant]
        try:
            best = study.best_trial
        except ValueError:  # no complete trial
            rows.append(f"| {variant} | {count} | {structures} | — | — |")
            continue
        rows.append(f"| {variant} | {count} | {structures} | {best.value:.5f} (trial {best.number}) | "
                    f"{_params(best)} |")
    return ["Settings each study chose (on the validation split; the test split was not read). `structures "
            "tried` is how many distinct structures (batch size, negatives, MLP depth, optimizer) the study's "
            "trials drew.", "", *rows, ""]

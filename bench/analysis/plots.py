"""The report's figures: loss curves, each seed's metric with the mean and its 95% CI, and
critical-difference diagrams. Each is drawn from what ``bench.analysis.stats`` computed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from bench import layout  # noqa: E402
from bench.analysis import stats  # noqa: E402
from bench.variants import BASELINE  # noqa: E402
from ncf_core.tasks import TASKS, higher_is_better  # noqa: E402


def _cd_plot(ra: dict[str, Any], title: str, path: Path) -> Path:
    _save(cd_figure(ra, title), path, bbox_inches="tight")  # the labels lie outside the axes
    return path


def cd_figure(ra: dict[str, Any], title: str) -> plt.Figure:
    """A critical-difference diagram of ``stats``' average ranks: scikit-posthocs' drawing, with its
    CD bar lifted off the rank axis's numbers."""
    import scikit_posthocs as sp

    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.35 * ra["k"]))
    sp.critical_difference_diagram(ra["ranks"], ra["pvalues"], ax=ax, cd=ra["cd"])
    _lift_cd_bar(ax, CD_LIFT)
    ax.set_title(title, fontsize=9, pad=12)
    fig.tight_layout()
    return fig


CD_LIFT = 0.6  # rank-axis units: scikit-posthocs draws the CD bar at 0.5, across the tick labels


def _lift_cd_bar(ax: plt.Axes, lift: float) -> None:
    """The CD bar and its label moved above the rank axis's numbers, which they otherwise cross."""
    for text in ax.texts:
        if text.get_text().startswith("CD ="):
            x, y = text.get_position()
            text.set_position((x, y + lift))
    for line in ax.lines:
        y = np.asarray(line.get_ydata(), float)
        if len(y) == 2 and np.all(y == 0.5):
            line.set_ydata(y + lift)
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top + lift)


def _save(fig: plt.Figure, path: Path, **kw: Any) -> None:
    fig.savefig(path, dpi=90, **kw)
    plt.close(fig)


def y_range(values: dict[str, np.ndarray], pad: float = 0.15) -> tuple[float, float] | None:
    """The metric axis from the variants and reference baselines (padded), leaving out an untuned floor
    baseline (``baseline-mean``) far below them, which would squash their differences into pixels;
    None where there is nothing else to scale to."""
    kept = [x for v, x in values.items() if not v.startswith(BASELINE) and len(x)]
    if not kept:
        return None
    low, high = float(min(x.min() for x in kept)), float(max(x.max() for x in kept))
    span = (high - low) or abs(high) or 1.0
    return low - pad * span, high + pad * span


def write_plots(records: list[dict[str, Any]], frame: pd.DataFrame, folder: Path, metrics_of: Any,
                primary_of: Any) -> list[Path]:
    """Loss curves (mean over seeds) and each seed's metric with the mean and its 95% CI, per data set;
    critical-difference diagrams per data set and device, and across data sets."""
    paths = []
    learned = [r for r in records if r.get("status") == "ok" and r.get("history")]
    for (dataset, task) in dict.fromkeys((r["dataset"], r["task"]) for r in learned):
        mine = [r for r in learned if r["dataset"] == dataset and r["task"] == task]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
        for variant in dict.fromkeys(r["variant"] for r in mine):
            hist = pd.DataFrame([h | {"seed": r["seed"]} for r in mine if r["variant"] == variant
                                 for h in r["history"]])
            curve = hist.groupby("epoch")[["train_loss", "valid_loss"]].mean()
            axes[0].plot(curve.index, curve["train_loss"], marker=".", label=variant)
            axes[1].plot(curve.index, curve["valid_loss"], marker=".", label=variant)
        for ax, part in zip(axes, ("training", "validation")):
            ax.set_title(f"{dataset} ({task}): {part} loss, mean over seeds", fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(TASKS[task].loss, fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"loss-{layout.file_label(dataset)}-{task}.png"
        _save(fig, path)
        paths.append(path)

        group = frame[(frame["dataset"] == dataset) & (frame["task"] == task) & (frame["status"] == "ok")]
        names = metrics_of(group, task)[:3]
        if not names:
            continue
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
        variants = list(dict.fromkeys(group["variant"]))
        for ax, m in zip(axes[0], names):
            for x, v in enumerate(variants):
                values = group[group["variant"] == v][m].dropna().to_numpy(float)
                if not len(values):
                    continue
                jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
                ax.scatter(x + jitter, values, s=14, alpha=0.6, color="tab:blue")
                mean, _, low, high = stats.mean_ci(values)
                if not math.isnan(low):
                    ax.errorbar(x, mean, yerr=[[mean - low], [high - mean]], fmt="o", color="black", capsize=4)
                else:
                    ax.plot(x, mean, "o", color="black")
            limits = y_range({v: group[group["variant"] == v][m].dropna().to_numpy(float) for v in variants})
            if limits is not None:
                ax.set_ylim(*limits)
                for x, v in enumerate(variants):  # a floor baseline off the scale: its mean at the edge, said
                    mean = group[group["variant"] == v][m].mean()
                    if v.startswith(BASELINE) and not limits[0] <= mean <= limits[1]:
                        edge = limits[1] if mean > limits[1] else limits[0]
                        ax.annotate(f"{mean:.3f}\n(off scale)", (x, edge), ha="center", fontsize=7,
                                    va="top" if edge == limits[1] else "bottom", color="gray")
            ax.set_xticks(range(len(variants)), variants, rotation=45, ha="right", fontsize=8)
            ax.set_ylabel(f"{m} ({'higher' if higher_is_better(m) else 'lower'} is better)")
            ax.set_title(f"{dataset} ({task}): {m}\nseeds (dots), mean and 95% CI (black)", fontsize=9)
        fig.tight_layout()
        path = folder / f"metrics-{layout.file_label(dataset)}-{task}.png"
        _save(fig, path)
        paths.append(path)
    for (dataset, task, device), group in frame.groupby(["dataset", "task", "device"], sort=False):
        primary = primary_of(group, task)
        ra = stats.rank_analysis(stats.seed_table(group, primary), primary) if primary in group else None
        if ra is not None:
            title = (f"{dataset} ({task}, {device}): average rank on {primary} over {ra['n']} seeds; "
                     f"Nemenyi CD {ra['cd']:.2f}")
            paths.append(_cd_plot(ra, title, folder / f"cd-{layout.file_label(dataset)}-{task}-{device}.png"))
    for device, ra in stats.ranks_across_datasets(frame, primary_of).items():
        title = f"all data sets ({device}): average rank over {ra['n']} data sets; Nemenyi CD {ra['cd']:.2f}"
        paths.append(_cd_plot(ra, title, folder / f"cd-all-{device}.png"))
    return paths

"""The task table: the one owner of what each task is, trains on, selects on and is judged by.

Everything that differs between the rating task (the seed write-up's regression of rating / 10)
and the ranking task (He et al.'s implicit feedback) is a field or a method here: what a row's
target is, how data are split, what a logit is scored against (``objective``, a key of
``ncf_core.losses.LOSSES``), whether training samples negatives and evaluation ranks candidates
(``implicit``), the selection and primary metrics and their direction, the baselines, and the
divergence scale. No module outside this one branches on a task's name; a new task is one row
here plus what is genuinely new (a loss, a split strategy). Metric names may carry a cut-off:
templates hold ``{k}``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Task:
    name: str
    loss: str  # what training minimises, in words (the report's plots say it)
    objective: str  # how a logit meets its target: a key of ncf_core.losses.LOSSES
    implicit: bool  # every row is a positive: training samples negatives, evaluation ranks candidates
    split: str  # how rows are held out: a key of ncf_core.data.splits.SPLITTERS
    selection: str  # validation metric for best epoch, early stopping and tuning
    primary: str  # test metric of the verdicts, paired tables, Friedman and rank diagrams
    metrics: tuple[str, ...]  # reported test metrics, primary first
    baselines: tuple[str, ...]  # reference predictors (ncf_core.baselines)
    zero_logit_loss: float  # an upper bound of the loss of a constant logit 0: the divergence scale
    sampled_twin: str | None = None  # the sampled metric whose model order is compared with the primary's

    def selection_metric(self, k: int = 10) -> str:
        return self.selection.format(k=k)

    def primary_metric(self, k: int = 10) -> str:
        return self.primary.format(k=k)

    def metric_names(self, k: int = 10) -> list[str]:
        return [m.format(k=k) for m in self.metrics]

    def twin_metric(self, k: int = 10) -> str | None:
        return None if self.sampled_twin is None else self.sampled_twin.format(k=k)

    def owns(self, column: str) -> bool:
        """Whether ``column`` is one of this task's metrics, at any cut-off."""
        return any(re.fullmatch(re.escape(m).replace(r"\{k\}", r"\d+"), column) for m in self.metrics)

    def diverged(self, train_loss: float) -> bool:
        """NaN/inf, or a loss ten times that of predicting logit 0 everywhere: a blow-up, not training."""
        return not math.isfinite(train_loss) or train_loss > DIVERGENCE_FACTOR * self.zero_logit_loss

    def targets(self, ratings: np.ndarray, max_rating: float) -> np.ndarray:
        """A row's training target: its rating scaled to [0, 1], or 1 (a positive) for implicit feedback."""
        return np.ones(len(ratings)) if self.implicit else np.asarray(ratings, dtype=np.float64) / max_rating

    def keeps(self, ratings: np.ndarray, unrated: float) -> np.ndarray:
        """Rows this task uses: for implicit feedback every interaction, rated or not."""
        return np.ones(len(ratings), bool) if self.implicit else np.asarray(ratings) != unrated

    def examples_per_row(self, n_negatives: int) -> int:
        """Training examples an epoch makes of one row: the row and, for implicit feedback, its negatives."""
        return 1 + n_negatives if self.implicit else 1


N_EVAL_NEGATIVES = 99  # He et al. 2017: each held-out positive ranked among 99 sampled non-positives
DIVERGENCE_FACTOR = 10.0
LOWER_IS_BETTER = frozenset({"mae", "rmse", "mse"})

TASKS: dict[str, Task] = {
    "rating": Task(
        "rating", loss="MSE of sigmoid(logit) against rating / max rating", objective="sigmoid-mse",
        implicit=False, split="ratio", selection="rmse", primary="rmse", metrics=("rmse", "mae", "r2"),
        baselines=("mean", "user-item-mean"), zero_logit_loss=0.25,  # (0.5 - y)^2 for y in [0, 1]
    ),
    "ranking": Task(
        "ranking", loss="binary cross-entropy, 1 positive : n negatives", objective="bce", implicit=True,
        split="leave-one-out", selection="ndcg@{k}", primary="full_ndcg@{k}",
        metrics=("full_ndcg@{k}", "full_hr@{k}", "full_recall@{k}", "hr@{k}", "ndcg@{k}"),
        baselines=("popularity",), zero_logit_loss=math.log(2.0), sampled_twin="ndcg@{k}",
    ),
}


def higher_is_better(metric: str) -> bool:
    return metric.split("@")[0].removeprefix("full_") not in LOWER_IS_BETTER


def task_of(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, not {name!r}")
    return TASKS[name]

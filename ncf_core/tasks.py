"""The task table: the one owner of what each task trains on, selects on and is judged by.

Training (loss, divergence), the evaluator (selection metric), tuning (objective and direction),
statistics (which way is better) and the report (primary metric, column order, baselines) all
read these rows instead of deciding "rating -> rmse, lower is better" each for itself.
Metric names may carry a cut-off: templates hold ``{k}``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    loss: str  # what training minimises, in words (the report's plots say it)
    selection: str  # validation metric for best epoch, early stopping and tuning
    primary: str  # test metric of the verdicts, paired tables, Friedman and rank diagrams
    metrics: tuple[str, ...]  # reported test metrics, primary first
    baselines: tuple[str, ...]  # reference predictors (ncf_core.baselines)
    zero_logit_loss: float  # an upper bound of the loss of a constant logit 0: the divergence scale

    def selection_metric(self, k: int = 10) -> str:
        return self.selection.format(k=k)

    def primary_metric(self, k: int = 10) -> str:
        return self.primary.format(k=k)

    def metric_names(self, k: int = 10) -> list[str]:
        return [m.format(k=k) for m in self.metrics]

    def owns(self, column: str) -> bool:
        """Whether ``column`` is one of this task's metrics, at any cut-off."""
        return any(re.fullmatch(re.escape(m).replace(r"\{k\}", r"\d+"), column) for m in self.metrics)

    def diverged(self, train_loss: float) -> bool:
        """NaN/inf, or a loss ten times that of predicting logit 0 everywhere: a blow-up, not training."""
        return not math.isfinite(train_loss) or train_loss > DIVERGENCE_FACTOR * self.zero_logit_loss


DIVERGENCE_FACTOR = 10.0
LOWER_IS_BETTER = frozenset({"mae", "rmse", "mse"})

TASKS: dict[str, Task] = {
    "rating": Task(
        "rating", loss="MSE of sigmoid(logit) against rating / max rating", selection="rmse",
        primary="rmse", metrics=("rmse", "mae", "r2"), baselines=("mean", "user-item-mean"),
        zero_logit_loss=0.25,  # (0.5 - y)^2 for y in [0, 1]
    ),
    "ranking": Task(
        "ranking", loss="binary cross-entropy, 1 positive : n negatives", selection="ndcg@{k}",
        primary="full_ndcg@{k}",
        metrics=("full_ndcg@{k}", "full_hr@{k}", "full_recall@{k}", "hr@{k}", "ndcg@{k}"),
        baselines=("popularity",), zero_logit_loss=math.log(2.0),
    ),
}


def higher_is_better(metric: str) -> bool:
    return metric.split("@")[0].removeprefix("full_") not in LOWER_IS_BETTER


def task_of(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, not {name!r}")
    return TASKS[name]

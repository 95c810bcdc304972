"""What training reports: each epoch's numbers, the best epoch, and divergence."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class Diverged(RuntimeError):
    """The training loss became NaN, infinite, or blew up (``Task.diverged``)."""


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    valid_loss: float
    valid_metric: float
    seconds: float
    samples: int


@dataclass
class History:
    metric: str
    higher_is_better: bool
    epochs: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0

    @property
    def train_seconds(self) -> float:
        return sum(e.seconds for e in self.epochs)

    @property
    def train_samples_per_s(self) -> float:
        return sum(e.samples for e in self.epochs) / max(self.train_seconds, 1e-12)

    def improved(self, value: float) -> bool:
        if not self.epochs or math.isnan(self.best_value):
            return True
        return value > self.best_value if self.higher_is_better else value < self.best_value

    @property
    def best_value(self) -> float:
        return self.epochs[self.best_epoch - 1].valid_metric if self.epochs else float("nan")

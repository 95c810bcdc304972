"""What a logit is scored against, per task objective (``Task.objective``): one owner for training
and evaluation alike."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from ncf_core.tasks import task_of

# How a logit meets its target (Task.objective): a prediction transform and a loss.
LOSSES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[..., torch.Tensor]]] = {
    "sigmoid-mse": (torch.sigmoid, F.mse_loss),  # the seed write-up's regression of rating / 10
    "bce": (lambda logits: logits, F.binary_cross_entropy_with_logits),  # implicit feedback
}


def predictions(task: str, logits: torch.Tensor) -> torch.Tensor:
    """What the task's metrics read from a logit (a rating on the 0-1 scale, or the logit itself)."""
    return LOSSES[task_of(task).objective][0](logits)


def loss_fn(task: str, logits: torch.Tensor, target: torch.Tensor,
            weights: torch.Tensor | None = None) -> torch.Tensor:
    """The task's objective, averaged over the last axis only: one loss per model when members are
    stacked (one model's batch takes the reduced kernel, two autograd nodes fewer per step).
    ``weights``: each example's share of its member's mean (zero on a padded row)."""
    transform, loss = LOSSES[task_of(task).objective]
    pred = transform(logits)
    if pred.dim() == 1 and weights is None:
        return loss(pred, target)
    losses = loss(pred, target, reduction="none")
    return losses.mean(-1) if weights is None else (losses * weights).sum(-1)

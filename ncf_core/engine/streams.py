"""Stacked members with their own example streams, laid out step by step (``Layout``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ncf_core.engine.stepping import set_active
from ncf_core.models.base import Dropout


class Layout:
    """Stacked members with their own example streams (their own negatives per positive, their own
    batch size, their own training set): step j holds each member's j-th batch, and a member whose
    examples have run out sits the step out (no optimizer step, no dropout draws). Each member thus
    takes the steps it takes alone, on the same batches.

    Members are ordered by their number of steps, most first (``order``), so that the members of a
    step are the stack's first k: the step runs on them alone (``ncf_core.engine.stacked``), as wide
    as the widest batch among them; a narrower batch is padded with a row of its own batch at weight
    zero, so that no table row enters a step that the member's batch does not hold (lazy Adam moves
    every row it is given)."""

    def __init__(self, lengths: list[int], batch_sizes: list[int], device: torch.device) -> None:
        steps = torch.tensor([math.ceil(n / b) for n, b in zip(lengths, batch_sizes)])
        if not bool((steps[:-1] >= steps[1:]).all()):
            raise ValueError("a layout's members come in order of their steps, most first (Layout.order)")
        n, b = torch.tensor(lengths)[:, None], torch.tensor(batch_sizes)[:, None]
        start = torch.arange(int(steps[0]))[None, :] * b  # (members, steps)
        counts = (n - start).clamp(0, None).minimum(b)
        live = (counts > 0).sum(0)  # members in each step: a prefix
        widths = torch.where(counts > 0, b, 0).amax(0)
        ends = widths.cumsum(0)
        self.spans = list(zip((ends - widths).tolist(), ends.tolist(), live.tolist()))
        step = torch.repeat_interleave(torch.arange(len(widths)), widths)  # each column's step
        column = torch.arange(int(ends[-1])) - (ends - widths)[step]  # and its place in that step
        real = column[None, :] < counts[:, step]
        first = start[:, step].minimum(n - 1)  # a padded column repeats the batch's first row
        self.index = torch.where(real, first + column[None, :], first).to(device)
        dtype = torch.get_default_dtype()
        self.weights = (real / counts[:, step].clamp(min=1)).to(device=device, dtype=dtype)
        self.counts = counts.T.tolist()  # (steps, members)
        self.rows = counts.T.to(device=device, dtype=dtype)
        self._dropouts: list[Dropout] | None = None

    @staticmethod
    def order(lengths: list[int], batch_sizes: list[int]) -> list[int]:
        """Positions of the members in order of their steps, most first (ties keep their order)."""
        return sorted(range(len(lengths)), key=lambda m: -math.ceil(lengths[m] / batch_sizes[m]))

    def lay_out(self, parts: list[tuple[torch.Tensor, ...]]) -> list[torch.Tensor]:
        """Each member's (users, items, targets) of this epoch, laid out step by step: (members, columns)."""
        return [torch.stack([t[index] for t, index in zip(column, self.index)]) for column in zip(*parts)]

    def enter(self, step: int, model: nn.Module, optimizers: list[torch.optim.Optimizer]) \
            -> tuple[torch.Tensor, torch.Tensor]:
        """Step ``step``'s example weights and rows per member; the members without examples in it
        are told to sit it out."""
        counts = self.counts[step]
        lo, hi, k = self.spans[step]
        set_active(optimizers, None if k == len(counts) else [c > 0 for c in counts])
        if self._dropouts is None:
            self._dropouts = [m for m in model.modules() if isinstance(m, Dropout)]
        for dropout in self._dropouts:
            dropout.member_rows = counts
        return self.weights[:k, lo:hi], self.rows[step, :k]

    def leave(self, model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> None:
        set_active(optimizers, None)
        for dropout in self._dropouts or []:
            dropout.member_rows = None


def add_losses(total: torch.Tensor, losses: torch.Tensor, rows: int | torch.Tensor) -> None:
    """The summed loss grows by each member's mean loss times its examples in the step (the first
    ``len(losses)`` members')."""
    if isinstance(rows, torch.Tensor):
        total[: len(losses)].add_(losses * rows)
    else:
        total.add_(losses, alpha=rows)

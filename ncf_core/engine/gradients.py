"""How embedding tables give their gradients: the rows of a batch, or a dense table built from them.

Plain SGD moves only the rows that have a gradient, so its tables give sparse gradients
(``row_gradients``; ``ncf_core.engine.optim.plain_sgd``). A dense optimizer needs the whole table's
gradient; over large tables it is built from those rows into a buffer zeroed once
(``DenseFromRows``) rather than by autograd's fresh zero table every step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ncf_core.config import TrainConfig
from ncf_core.engine.optim import plain_sgd
from ncf_core.engine.stacked import StackedEmbedding


def tables(model: nn.Module) -> list[nn.Module]:
    """``model``'s embedding tables, plain or stacked."""
    return [m for m in model.modules() if isinstance(m, (nn.Embedding, StackedEmbedding))]


def row_gradients(model: nn.Module, on: bool) -> Callable[[], None]:
    """Switch ``model``'s embedding tables to sparse gradients (``on``); returns what switches them
    back. For plain SGD that is the dense step exactly (``ncf_core.engine.optim.plain_sgd``)."""
    switched = tables(model) if on else []
    before = [m.sparse for m in switched]
    for m in switched:
        m.sparse = True

    def restore() -> None:
        for m, sparse in zip(switched, before):
            m.sparse = sparse
    return restore


DENSIFY_MIN = 1 << 20  # table weights from which a fresh zero gradient a step costs more than its rows' bookkeeping


def densified(model: nn.Module, cfg: TrainConfig, device: torch.device) -> bool:
    """Dense optimizers on a CPU over large tables (a stack of ML-1M's, not one of ml-100k's): their
    embedding gradients are built from the batch's rows. Below ~1M weights the sparse gradient's
    bookkeeping costs more than the zeros it saves (a single GMF on ML-1M: 1.26x the step)."""
    if device.type != "cpu" or cfg.sparse or cfg.compile or plain_sgd(cfg):
        return False
    return sum(m.weight.numel() for m in tables(model)) >= DENSIFY_MIN


class DenseFromRows:
    """A dense optimizer's embedding gradients, built from the batch's rows into buffers zeroed once.

    Autograd's dense embedding backward fills a fresh table of zeros every step and adds the rows
    in; on ML-1M's tables that fill was a third of an MF Adam step (``densified`` says where it pays).
    Here the tables give sparse gradients, whose rows are added into a buffer that the
    optimizers read as ``.grad`` and that is cleared at those rows after the step: the same
    gradient, bit for bit (``tests/ncf_core/engine/test_train.py``), and the same update.
    """

    def __init__(self, model: nn.Module) -> None:
        self.tables = tables(model)
        self.restore = row_gradients(model, True)
        self.buffers = RowBuffers([m.weight for m in self.tables])

    def densify(self) -> None:
        for k, table in enumerate(self.tables):
            grad = table.weight.grad
            if grad is not None and grad.is_sparse:
                table.weight.grad = self.buffers.add(k, grad._indices()[0], grad._values())

    def clear(self) -> None:
        self.buffers.clear()


class RowBuffers:
    """Dense gradients of tables, zero but for the rows a step added: filled with zeros once, then
    cleared at those rows after the step (optimizers only read a gradient)."""

    def __init__(self, weights: list[torch.Tensor]) -> None:
        self.buffers = [torch.zeros_like(w) for w in weights]
        self.written: list[tuple[torch.Tensor, torch.Tensor]] = []

    def add(self, k: int, ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Table ``k``'s gradient with ``rows`` added at ``ids``."""
        self.written.append((self.buffers[k], ids))
        return self.buffers[k].index_add_(0, ids, rows)

    def clear(self) -> None:
        for buffer, ids in self.written:
            buffer.index_fill_(0, ids, 0.0)
        self.written.clear()

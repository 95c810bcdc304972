"""Seed stacking: S models of one architecture as one module with a leading seed axis.

Every ``nn.Embedding`` becomes one table of S * n rows (a seed's ids are offset into its block),
every ``nn.Linear`` a batched matmul over S weight matrices, and any other parameter gains a
leading S axis. The models' own ``forward`` then runs unchanged on (S, B) ids, because it only
uses element-wise ops and ``dim=-1``; that is the contract a new model keeps to be stackable
(``tests/ncf_core/engine/test_stacked.py`` checks every registered model against its unstacked copies).

Parameters of different seeds never mix, and Adam and SGD are element-wise, so one optimizer
step on the stacked module is S independent steps. A member is a seed, or a tuning trial: members
may differ in initial weights, NeuMF's alpha, dropout rate, and, through ``ncf_core.engine.optim``,
learning rate, weight decay and momentum; and in widths (factors, layer widths), not in depth.

Members of different widths are zero-padded to the widest: a padded unit's weights in and out are
zero, so its activation is zero, ReLU passes no gradient at zero, and every gradient reaching a
padded weight is a product with a zero: the padding stays zero under Adam, SGD, weight decay and
L2, and a member computes what it computes alone. Where a weight's axis concatenates parts (NeuMF's
embedding holds GMF then MLP columns; an MLP's first layer reads user then item), the model lists
the parts' sizes in ``stack_blocks()`` and each part is padded in place; an axis a model does not
list is one part, padded at its end. A model whose forward splits by widths keeps them in a
``widths`` attribute, which the stack widens.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ncf_core.models.base import Dropout, members


class StackedEmbedding(nn.Module):
    def __init__(self, tables: list[nn.Embedding]) -> None:
        super().__init__()
        self.n_rows, self.dim = tables[0].weight.shape
        self.sparse = tables[0].sparse
        self.weight = nn.Parameter(torch.cat([t.weight.detach() for t in tables]).clone())
        offset = torch.arange(len(tables), device=self.weight.device) * self.n_rows
        self.register_buffer("offset", offset[:, None], persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids + self.offset[: len(ids)], self.weight, sparse=self.sparse)

    def unstacked(self, seed: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight.detach().view(-1, self.n_rows, self.dim)[seed]}


class StackedLinear(nn.Module):
    """Weights stored as (S, in, out) so that the forward is one ``baddbmm``."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([lin.weight.detach().T for lin in layers]).contiguous())
        self.bias = None
        if layers[0].bias is not None:
            self.bias = nn.Parameter(torch.stack([lin.bias.detach() for lin in layers])[:, None, :].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = members(self.weight, x), members(self.bias, x)
        if bias is None:
            return torch.bmm(x, weight)
        return torch.baddbmm(bias, x, weight)

    def unstacked(self, seed: int) -> dict[str, torch.Tensor]:
        out = {"weight": self.weight.detach()[seed].T}
        if self.bias is not None:
            out["bias"] = self.bias.detach()[seed, 0]
        return out


_STACKED = {nn.Embedding: StackedEmbedding, nn.Linear: StackedLinear}


Blocks = dict[str, list[list[int]]]  # parameter name -> each axis's part sizes
NOT_ALIKE = "stacked models must share their layers (they may differ in widths only)"


def _blocks(model: nn.Module) -> Blocks:
    declared = getattr(model, "stack_blocks", dict)()
    return {name: declared.get(name, [[n] for n in p.shape]) for name, p in model.named_parameters()}


def _widest(blocks: list[Blocks]) -> Blocks:
    try:
        return {name: [[max(sizes) for sizes in zip(*(b[name][axis] for b in blocks), strict=True)]
                       for axis in range(len(parts))] for name, parts in blocks[0].items()}
    except (KeyError, ValueError):
        raise ValueError(NOT_ALIKE) from None


def _positions(own: list[int], wide: list[int]) -> torch.Tensor:
    """Where an axis of parts ``own`` lies in the same axis padded to parts ``wide``."""
    starts = [sum(wide[:j]) for j in range(len(wide))]
    return torch.cat([torch.arange(n) + start for n, start in zip(own, starts)])


def _padded(t: torch.Tensor, own: list[list[int]], wide: list[list[int]]) -> torch.Tensor:
    for axis, (o, w) in enumerate(zip(own, wide)):
        if o != w:
            shape = list(t.shape)
            shape[axis] = sum(w)
            t = t.new_zeros(shape).index_copy_(axis, _positions(o, w).to(t.device), t)
    return t


def _unpadded(t: torch.Tensor, own: list[list[int]], wide: list[list[int]]) -> torch.Tensor:
    for axis, (o, w) in enumerate(zip(own, wide)):
        if o != w:
            t = t.index_select(axis, _positions(o, w).to(t.device))
    return t


def _pad(models: list[nn.Module], widest: list[nn.Module]) -> tuple[list[nn.Module], list[Blocks] | None,
                                                                   Blocks | None]:
    """Copies of ``models`` padded to the widest of ``widest`` (themselves where all are alike),
    with each member's parts and the padded ones."""
    if len({tuple(type(m) for m in model.modules()) for model in widest}) != 1:
        raise ValueError(NOT_ALIKE)
    blocks = [_blocks(m) for m in models]
    wide = _widest([_blocks(m) for m in widest])
    if all(b == wide for b in blocks):
        return models, None, None
    padded = []
    for model, own in zip(models, blocks):
        copy_ = copy.deepcopy(model)
        for name, p in copy_.named_parameters():
            p.data = _padded(p.data, own[name], wide[name])
        if hasattr(copy_, "widths"):
            copy_.widths = [max(w) for w in zip(*(m.widths for m in widest))]
        padded.append(copy_)
    return padded, blocks, wide


def stack(models: list[nn.Module], widest: list[nn.Module] | None = None) -> nn.Module:
    """One module computing all ``models`` at once: ``stacked(users, items)`` with (S, B) ids gives (S, B).

    Members of different widths are padded to the widest of ``widest`` (default: ``models``), so
    that a stack rebuilt without some members keeps its shapes (and its optimizer state fits)."""
    if len({type(m) for m in models}) != 1:
        raise ValueError("stacked models must share one class")
    padded, blocks, wide = _pad(models, widest or models)
    stacked = copy.deepcopy(padded[0])
    stacked._member_blocks, stacked._wide_blocks = blocks, wide
    for name, module in list(stacked.named_modules()):
        parts = [m.get_submodule(name) for m in padded]
        if isinstance(module, Dropout):  # each member keeps its own rate and width (tuning trials differ)
            module.member_p = [part.p for part in parts]
            module.member_width = [part.width for part in parts]
        kind = _STACKED.get(type(module))
        if kind is not None:
            parent, _, child = name.rpartition(".")
            setattr(stacked.get_submodule(parent), child, kind(parts))
            continue
        for pname, p in module._parameters.items():  # loose parameters, e.g. MF's global bias
            if p is not None:
                module._parameters[pname] = nn.Parameter(
                    torch.stack([m._parameters[pname].detach() for m in parts]).clone())
    return stacked


def unstack(stacked: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The state dict of seed ``seed``'s own model (views into the stacked weights, where unpadded)."""
    state: dict[str, torch.Tensor] = {}
    for name, module in stacked.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, (StackedEmbedding, StackedLinear)):
            state.update({prefix + k: v for k, v in module.unstacked(seed).items()})
        else:
            state.update({prefix + k: p.detach()[seed] for k, p in module._parameters.items() if p is not None})
    blocks = getattr(stacked, "_member_blocks", None)
    if blocks is not None:
        wide = stacked._wide_blocks
        state = {k: _unpadded(v, blocks[seed][k], wide[k]) for k, v in state.items()}
    return state

"""Seed stacking: S models of one architecture as one module with a leading seed axis.

Every ``nn.Embedding`` becomes one table of S * n rows (a seed's ids are offset into its block),
every ``nn.Linear`` a batched matmul over S weight matrices, and any other parameter gains a
leading S axis. The models' own ``forward`` then runs unchanged on (S, B) ids, because it only
uses element-wise ops and ``dim=-1``; that is the contract a new model keeps to be stackable
(``tests/test_stacked.py`` checks every registered model against its unstacked copies).

Parameters of different seeds never mix, and Adam and SGD are element-wise, so one optimizer
step on the stacked module is S independent steps. A member is a seed, or a tuning trial: members
may differ in anything that leaves the shapes alone (initial weights, NeuMF's alpha, dropout rate,
and, through ``ncf_core.engine.optim``, learning rate, weight decay and momentum).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ncf_core.models.base import Dropout


class StackedEmbedding(nn.Module):
    def __init__(self, tables: list[nn.Embedding]) -> None:
        super().__init__()
        self.n_rows, self.dim = tables[0].weight.shape
        self.sparse = tables[0].sparse
        self.weight = nn.Parameter(torch.cat([t.weight.detach() for t in tables]).clone())
        offset = torch.arange(len(tables), device=self.weight.device) * self.n_rows
        self.register_buffer("offset", offset[:, None], persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids + self.offset, self.weight, sparse=self.sparse)

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
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)

    def unstacked(self, seed: int) -> dict[str, torch.Tensor]:
        out = {"weight": self.weight.detach()[seed].T}
        if self.bias is not None:
            out["bias"] = self.bias.detach()[seed, 0]
        return out


_STACKED = {nn.Embedding: StackedEmbedding, nn.Linear: StackedLinear}


def stack(models: list[nn.Module]) -> nn.Module:
    """One module computing all ``models`` at once: ``stacked(users, items)`` with (S, B) ids gives (S, B)."""
    if len({type(m) for m in models}) != 1:
        raise ValueError("stacked models must share one class")
    stacked = copy.deepcopy(models[0])
    for name, module in list(stacked.named_modules()):
        parts = [m.get_submodule(name) for m in models]
        if isinstance(module, Dropout):  # each member keeps its own rate (tuning trials differ in it)
            module.member_p = [part.p for part in parts]
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
    """The state dict of seed ``seed``'s own model (views into the stacked weights)."""
    state: dict[str, torch.Tensor] = {}
    for name, module in stacked.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, (StackedEmbedding, StackedLinear)):
            state.update({prefix + k: v for k, v in module.unstacked(seed).items()})
        else:
            state.update({prefix + k: p.detach()[seed] for k, p in module._parameters.items() if p is not None})
    return state

"""Pieces the models share: embedding init and the optional item side-feature projection."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def embedding(n: int, dim: int, sparse: bool = False, std: float = 0.01) -> nn.Embedding:
    """N(0, std) init: 0.01 in the NCF paper's code, 0.1 in Rendle et al. 2020's MF."""
    emb = nn.Embedding(n, dim, sparse=sparse)
    nn.init.normal_(emb.weight, std=std)
    return emb


def linear(width_in: int, width_out: int) -> nn.Linear:
    """Glorot-uniform weights, zero bias (the NCF code's Keras init).

    PyTorch's default bias init, on inputs as small as N(0, 0.01) embeddings, can leave every
    ReLU of a layer dead from the first step: the MLP then predicts a constant.
    """
    layer = nn.Linear(width_in, width_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Dropout(nn.Module):
    """Inverted dropout whose masks come from explicit generators, set by training.

    One generator: masks of the input's shape. S generators (stacked seeds, input (S, B, W)):
    seed s draws its (B, W) mask from its own generator, exactly the draws it makes alone, so a
    seed's masks do not depend on which seeds share its stack, nor on torch's global generator.
    ``width``: the units it drops, so that a member padded to a wider stack draws its own mask's size;
    ``member_rows`` (set by training each step): the examples each member has in the step, where
    members with their own batch sizes are padded to the widest (a member draws for its own rows only,
    none in a step it sits out).
    """

    def __init__(self, p: float, width: int | None = None) -> None:
        super().__init__()
        self.p, self.width = float(p), width
        self.member_p: list[float] | None = None  # stacked members' own rates (ncf_core.engine.stacked)
        self.member_width: list[int | None] | None = None  # and widths (members padded to the widest)
        self.member_rows: list[int] | None = None  # and rows in this step (members padded to the widest batch)
        self.generators: list[torch.Generator] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rates = self.member_p or [self.p]
        if not self.training or not any(rates):
            return x
        gens = self.generators
        if not gens:
            return F.dropout(x, self.p, training=True)
        if len(gens) == 1:
            return x * self._masks(x.shape, x, gens, [self.p])[0]
        if x.shape[0] > len(gens):
            raise ValueError(f"{len(gens)} dropout generators for a stack of {x.shape[0]}")
        k = x.shape[0]  # a stack's first k members (ncf_core.engine.stacked)
        rates = rates if len(rates) == len(gens) else rates * len(gens)
        widths, rows = (None if v is None else v[:k] for v in (self.member_width, self.member_rows))
        return x * self._masks(x.shape[1:], x, gens[:k], rates[:k], widths, rows)

    @staticmethod
    def _masks(shape: torch.Size, like: torch.Tensor, gens: list[torch.Generator], rates: list[float],
               widths: list[int | None] | None = None, rows: list[int] | None = None) -> torch.Tensor:
        """One mask per generator, (len(gens), *shape): uniform draws below the keep rate, over it.
        On a CPU this is ~2x ``bernoulli_`` (which took 16 % of an MLP study), and a member's mask is
        the same whether it is drawn alone or in a stack (a padded member draws its own width's
        mask; its padding is zero whatever the mask holds there)."""
        widths = [shape[-1] if w is None else w for w in widths or [None] * len(gens)]
        rows = rows or [shape[0]] * len(gens)
        padded = any(w != shape[-1] for w in widths) or any(r != shape[0] for r in rows)
        draws = (torch.zeros if padded else torch.empty)((len(gens), *shape), dtype=like.dtype, device=like.device)
        for d, g, p, w, r in zip(draws, gens, rates, widths, rows):
            if not r:  # sits this step out: draws nothing
                continue
            if w == shape[-1] and r == shape[0]:
                torch.rand(shape, generator=g, dtype=like.dtype, device=like.device, out=d)
            else:
                d = d[:r, ..., :w]
                d.copy_(torch.rand(d.shape, generator=g, dtype=like.dtype, device=like.device))
            d.lt_(1.0 - p).mul_(1.0 / (1.0 - p))
        return draws


def members(p: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """A stacked parameter's blocks of the members ``x`` holds (a stack may run on its first k
    members, ``ncf_core.engine.stacked``): the first ``len(x)``; all of them, or an unstacked
    parameter, as it is. A model's forward passes its loose parameters through this."""
    if p is None or p.dim() < 2 or len(x) >= len(p):
        return p
    return p[: len(x)]


def set_dropout_generators(model: nn.Module, generators: list[torch.Generator] | None) -> None:
    for module in model.modules():
        if isinstance(module, Dropout):
            module.generators = generators
            module.member_rows = None


class ItemTower(nn.Module):
    """Item embedding, plus a linear projection of the item's side features when given.

    Adding (not concatenating) keeps every downstream shape independent of the features, so
    pretraining copies work whether features are used or not.
    """

    def __init__(self, n_items: int, dim: int, features: torch.Tensor | None, sparse: bool,
                 std: float = 0.01) -> None:
        super().__init__()
        self.embedding = embedding(n_items, dim, sparse, std)
        if features is not None:
            self.register_buffer("features", features.to(torch.get_default_dtype()), persistent=False)
            self.project = nn.Linear(features.shape[1], dim, bias=False)
            nn.init.normal_(self.project.weight, std=0.01)
        else:
            self.features = None
            self.project = None

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        out = self.embedding(items)
        if self.project is not None:
            out = out + self.project(self.features[items])
        return out


def lookup_penalty(model: nn.Module, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Per example, the squared norm of every parameter row it looks up: user and item embeddings,
    and MF's biases. Its gradient is Rendle et al. 2020's regularisation (``reg * row`` on each row,
    once per example that touches it), so frequent users and items are held back more than rare
    ones, unlike weight decay, which shrinks every row every step."""
    total = model.user(users).square().sum(-1) + model.item.embedding(items).square().sum(-1)
    for name, ids in (("user_bias", users), ("item_bias", items)):
        table = getattr(model, name, None)
        if table is not None:
            total = total + table(ids).square().sum(-1)
    bias = getattr(model, "bias", None)
    if isinstance(bias, torch.Tensor):
        total = total + members(bias, total).square()
    return total

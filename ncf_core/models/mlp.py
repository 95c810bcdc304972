"""MLP: concatenated user and item embeddings through a ReLU tower, then a linear output."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ncf_core.config import ModelConfig
from ncf_core.models.base import Dropout, ItemTower, embedding, linear


def tower_grid(users: torch.Tensor, items: torch.Tensor, layers: nn.Sequential,
               head: Callable[[torch.Tensor, slice, slice], torch.Tensor], cells: int = 1 << 23) -> torch.Tensor:
    """A tower's output for every (user, item) pair, through ``head`` to one logit each.

    The first layer of concat(u, i) is W_u u + W_i i + b: computed once per user and once per item
    instead of once per pair, which on a full ranking (every user times every item) is most of the
    tower's work. Then the rest of the tower runs on blocks of users whose hidden layer fits in
    ``cells`` floats. ``head(hidden, user rows, item columns)`` maps the last layer to logits.
    """
    first = layers[0]
    half = users.shape[-1]
    per_user = users @ first.weight[:, :half].T + first.bias
    per_item = items @ first.weight[:, half:].T
    step = max(1, cells // max(1, len(items) * first.out_features))
    out = [head(layers[1:](per_user[lo:lo + step, None, :] + per_item[None, :, :]), slice(lo, lo + step),
                slice(None)).squeeze(-1) for lo in range(0, len(users), step)]
    return torch.cat(out)


def tower(layers: tuple[int, ...], dropout: float) -> nn.Sequential:
    blocks: list[nn.Module] = []
    for width_in, width_out in zip(layers[:-1], layers[1:]):
        blocks += [linear(width_in, width_out), nn.ReLU()]
        if dropout > 0:
            blocks.append(Dropout(dropout, width_out))
    return nn.Sequential(*blocks)


class MLP(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: ModelConfig,
                 item_features: torch.Tensor | None = None, sparse: bool = False) -> None:
        super().__init__()
        features = item_features if cfg.use_item_features else None
        half = cfg.mlp_layers[0] // 2
        self.user = embedding(n_users, half, sparse, cfg.init_std)
        self.item = ItemTower(n_items, half, features, sparse, cfg.init_std)
        self.tower = tower(cfg.mlp_layers, cfg.dropout)
        self.out = linear(cfg.mlp_layers[-1], 1)  # no ReLU on the output: it is a logit

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.out(self.tower(torch.cat([self.user(users), self.item(items)], dim=-1))).squeeze(-1)

    def stack_blocks(self) -> dict[str, list[list[int]]]:
        """The first layer reads user then item columns (``ncf_core.engine.stacked`` pads each)."""
        first = self.tower[0].weight
        return {"tower.0.weight": [[first.shape[0]], [first.shape[1] // 2] * 2]}

    def grid(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Every user's logit for every item, (users, items) (evaluation)."""
        return tower_grid(self.user(users), self.item(items), self.tower, lambda h, rows, cols: self.out(h))

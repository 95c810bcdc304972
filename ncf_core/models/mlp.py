"""MLP: concatenated user and item embeddings through a ReLU tower, then a linear output."""

from __future__ import annotations

import torch
from torch import nn

from ncf_core.config import ModelConfig
from ncf_core.models.base import Dropout, ItemTower, embedding, linear


def tower(layers: tuple[int, ...], dropout: float) -> nn.Sequential:
    blocks: list[nn.Module] = []
    for width_in, width_out in zip(layers[:-1], layers[1:]):
        blocks += [linear(width_in, width_out), nn.ReLU()]
        if dropout > 0:
            blocks.append(Dropout(dropout))
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

"""Generalised MF: element-wise product of embeddings, then a learned output layer."""

from __future__ import annotations

import torch
from torch import nn

from ncf_core.config import ModelConfig
from ncf_core.models.base import ItemTower, embedding, linear


class GMF(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: ModelConfig,
                 item_features: torch.Tensor | None = None, sparse: bool = False) -> None:
        super().__init__()
        features = item_features if cfg.use_item_features else None
        self.user = embedding(n_users, cfg.n_factors, sparse, cfg.init_std)
        self.item = ItemTower(n_items, cfg.n_factors, features, sparse, cfg.init_std)
        self.out = linear(cfg.n_factors, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.out(self.user(users) * self.item(items)).squeeze(-1)

    def grid(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Every user's logit for every item: sum_k u_k i_k w_k + b is U (I * w)^T + b, one product."""
        return self.user(users) @ (self.item(items) * self.out.weight).T + self.out.bias

"""Matrix factorisation: dot product plus user, item and global biases (Rendle et al. 2020).

Where a protocol feeds item side features to the models (anime), MF's item vector gets them the
same way as GMF's (embedding + a linear projection of the features): the baseline sees the same
inputs as the models it is compared with, and stays a dot product.
"""

from __future__ import annotations

import torch
from torch import nn

from ncf_core.config import ModelConfig
from ncf_core.models.base import ItemTower, embedding, members


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: ModelConfig,
                 item_features: torch.Tensor | None = None, sparse: bool = False) -> None:
        super().__init__()
        features = item_features if cfg.use_item_features else None
        self.user = embedding(n_users, cfg.n_factors, sparse, cfg.init_std)
        self.item = ItemTower(n_items, cfg.n_factors, features, sparse, cfg.init_std)
        self.user_bias = nn.Embedding(n_users, 1, sparse=sparse)
        self.item_bias = nn.Embedding(n_items, 1, sparse=sparse)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user(users) * self.item(items)).sum(-1)
        return dot + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1) + members(self.bias, dot)

    def grid(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Every user's logit for every item, (users, items): one matrix product."""
        return (self.user(users) @ self.item(items).T + self.user_bias(users) + self.item_bias(items).T
                + self.bias)

"""NeuMF: a GMF and an MLP branch with separate embeddings, fused in one output layer."""

from __future__ import annotations

import torch
from torch import nn

from ncf_core.config import ModelConfig
from ncf_core.models.base import linear
from ncf_core.models.gmf import GMF
from ncf_core.models.mlp import MLP


class NeuMF(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: ModelConfig,
                 item_features: torch.Tensor | None = None, sparse: bool = False) -> None:
        super().__init__()
        # The branches' own output layers are unused here; only their hidden parts are.
        self.gmf = GMF(n_users, n_items, cfg, item_features, sparse)
        self.mlp = MLP(n_users, n_items, cfg, item_features, sparse)
        del self.gmf.out, self.mlp.out
        self.out = linear(cfg.n_factors + cfg.mlp_layers[-1], 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.gmf.hidden(users, items), self.mlp.hidden(users, items)], dim=-1)
        return self.out(h).squeeze(-1)

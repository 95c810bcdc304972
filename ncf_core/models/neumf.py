"""NeuMF: a GMF and an MLP branch with separate embeddings, fused in one output layer.

The two branches' embeddings are stored side by side: one user table holds each user's GMF
factors, then its MLP factors, and likewise for items. The parameters, their initialisation and
their (element-wise) Adam updates are those of four separate tables; a step does half the lookups
and half the embedding-gradient work, which on a CPU is a large part of a NeuMF step.
"""

from __future__ import annotations

import torch
from torch import nn

from ncf_core.config import ModelConfig
from ncf_core.models.base import ItemTower, embedding, linear
from ncf_core.models.mlp import tower, tower_grid


class NeuMF(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: ModelConfig,
                 item_features: torch.Tensor | None = None, sparse: bool = False) -> None:
        super().__init__()
        features = item_features if cfg.use_item_features else None
        self.widths = [cfg.n_factors, cfg.mlp_layers[0] // 2]  # GMF's columns, then the MLP's
        self.user = embedding(n_users, sum(self.widths), sparse, cfg.init_std)
        self.item = ItemTower(n_items, sum(self.widths), features, sparse, cfg.init_std)
        self.tower = tower(cfg.mlp_layers, cfg.dropout)
        self.out = linear(cfg.n_factors + cfg.mlp_layers[-1], 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # split, not slicing: its backward is one cat instead of a zero-filled copy per slice
        u_gmf, u_mlp = self.user(users).split(self.widths, dim=-1)
        i_gmf, i_mlp = self.item(items).split(self.widths, dim=-1)
        mlp = self.tower(torch.cat([u_mlp, i_mlp], dim=-1))
        return self.out(torch.cat([u_gmf * i_gmf, mlp], dim=-1)).squeeze(-1)

    def stack_blocks(self) -> dict[str, list[list[int]]]:
        """Axes that hold GMF's part then the MLP's, or user then item (``ncf_core.engine.stacked``)."""
        first = self.tower[0].weight
        blocks = {"user.weight": [[self.user.weight.shape[0]], self.widths],
                  "item.embedding.weight": [[self.item.embedding.weight.shape[0]], self.widths],
                  "tower.0.weight": [[first.shape[0]], [self.widths[1]] * 2],
                  "out.weight": [[1], [self.widths[0], self.out.weight.shape[1] - self.widths[0]]]}
        if self.item.project is not None:
            blocks["item.project.weight"] = [self.widths, [self.item.project.weight.shape[1]]]
        return blocks

    def grid(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Every user's logit for every item, (users, items) (evaluation): the output layer is
        w_g . (u_g * i_g) + w_m . mlp(u, i) + b, its GMF half one matrix product."""
        u_gmf, u_mlp = self.user(users).split(self.widths, dim=-1)
        i_gmf, i_mlp = self.item(items).split(self.widths, dim=-1)
        f = self.widths[0]
        gmf = u_gmf @ (i_gmf * self.out.weight[:, :f]).T + self.out.bias

        def head(hidden: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
            return hidden @ self.out.weight[:, f:].T + gmf[rows, cols, None]

        return tower_grid(u_mlp, i_mlp, self.tower, head)

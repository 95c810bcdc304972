"""Pieces the models share: embedding init and the optional item side-feature projection."""

from __future__ import annotations

import torch
from torch import nn


def embedding(n: int, dim: int, sparse: bool = False) -> nn.Embedding:
    """N(0, 0.01) init, as the NCF paper's code."""
    emb = nn.Embedding(n, dim, sparse=sparse)
    nn.init.normal_(emb.weight, std=0.01)
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


class ItemTower(nn.Module):
    """Item embedding, plus a linear projection of the item's side features when given.

    Adding (not concatenating) keeps every downstream shape independent of the features, so
    pretraining copies work whether features are used or not.
    """

    def __init__(self, n_items: int, dim: int, features: torch.Tensor | None, sparse: bool) -> None:
        super().__init__()
        self.embedding = embedding(n_items, dim, sparse)
        if features is not None:
            self.register_buffer("features", features.float(), persistent=False)
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

"""The floor every variant must clear: fixed predictors with nothing to tune, as modules returning
logits, so that they go through exactly the same evaluation code as the learned models.

Rating: the training mean, and user mean + item mean - global mean. Ranking: item popularity.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ncf_core.data.interactions import Interactions


def _logit(p: np.ndarray) -> torch.Tensor:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return torch.from_numpy(np.log(p / (1 - p))).float()


class TableModel(nn.Module):
    """logit = user_table[u] + item_table[i] (one of them may be all zero)."""

    def __init__(self, user_table: torch.Tensor, item_table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("user_table", user_table)
        self.register_buffer("item_table", item_table)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.user_table[users] + self.item_table[items]


def _means(train: Interactions, by: np.ndarray, n: int, fallback: float) -> np.ndarray:
    sums = np.bincount(by, weights=train.target, minlength=n)
    counts = np.bincount(by, minlength=n)
    return np.where(counts > 0, sums / np.maximum(counts, 1), fallback)


def fit_baseline(name: str, train: Interactions) -> nn.Module:
    mu = float(train.target.mean())
    if name == "mean":
        return TableModel(torch.zeros(train.n_users), _logit(np.full(train.n_items, mu)))
    if name == "user-item-mean":
        # Additive in probability space, so it cannot be split into per-user and per-item logits.
        return UserItemMean(
            torch.from_numpy(_means(train, train.users, train.n_users, mu)).float(),
            torch.from_numpy(_means(train, train.items, train.n_items, mu)).float(), mu)
    if name == "popularity":
        counts = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
        return TableModel(torch.zeros(train.n_users), torch.from_numpy(np.log1p(counts)).float())
    raise ValueError(f"unknown baseline {name!r}")


class UserItemMean(nn.Module):
    """prediction = clip(user mean + item mean - global mean); unseen ids fall back to the mean."""

    def __init__(self, user_mean: torch.Tensor, item_mean: torch.Tensor, mu: float) -> None:
        super().__init__()
        self.register_buffer("user_mean", user_mean)
        self.register_buffer("item_mean", item_mean)
        self.mu = mu

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p = (self.user_mean[users] + self.item_mean[items] - self.mu).clamp(1e-4, 1 - 1e-4)
        return torch.log(p / (1 - p))

"""What a fitted reference baseline is to the evaluator: a module whose ``forward`` scores (user,
item) pairs and whose ``grid`` scores users × items, like the learned models, so that one metric
code path judges them all. The training interactions are a scipy.sparse matrix, never dense.
(The registry and the methods import no torch: the command line lists them without it.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ncf_core.baselines import REFERENCES, memory_problem
from ncf_core.data.interactions import Interactions


def user_items(train: Interactions) -> sp.csr_matrix:
    """The binary users × items matrix of the training positives (a repeated pair counts once)."""
    ones = np.ones(len(train), np.float32)
    x = sp.csr_matrix((ones, (train.users, train.items)), shape=(train.n_users, train.n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


class ItemItem(nn.Module):
    """score(u, i) = x_u · W[:, i]: a user's training row times an item × item weight matrix
    (dense for EASE^R, sparse top-K for the neighbourhood models), computed with scipy on the CPU."""

    def __init__(self, x: sp.csr_matrix, weights: np.ndarray | sp.csr_matrix) -> None:
        super().__init__()
        self.x, self.weights = x, weights

    def _scores(self, users: np.ndarray) -> np.ndarray:
        """The given users' scores for every item (one product; columns are picked afterwards, so a
        dense EASE^R matrix is never copied)."""
        out = self.x[users] @ self.weights
        return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float32)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        unique, row = np.unique(users.cpu().numpy(), return_inverse=True)
        return torch.from_numpy(self._scores(unique)[row, items.cpu().numpy()]).to(users.device)

    def grid(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._scores(users.cpu().numpy())[:, items.cpu().numpy()]).to(users.device)


class Factors(nn.Module):
    """score(u, i) = p_u · q_i, from factors fitted elsewhere (iALS)."""

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("user_factors", torch.from_numpy(np.ascontiguousarray(user_factors, np.float32)))
        self.register_buffer("item_factors", torch.from_numpy(np.ascontiguousarray(item_factors, np.float32)))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_factors[users] * self.item_factors[items]).sum(-1)

    def grid(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.user_factors[users] @ self.item_factors[items].T


def fit_reference(name: str, train: Interactions, cfg: Any, seed: int, threads: int = 1) -> nn.Module:
    """The reference fitted on ``train``'s positives only: nothing else of a split reaches it."""
    problem = memory_problem(name, train.n_users, train.n_items, cfg)
    if problem:
        raise MemoryError(problem)
    x = user_items(train)
    fitted = REFERENCES[name].fit(x, cfg, seed, threads)
    return Factors(*fitted) if isinstance(fitted, tuple) else ItemItem(x, fitted)

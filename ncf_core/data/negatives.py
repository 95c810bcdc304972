"""Negative sampling, vectorised: never a Python loop per sample."""

from __future__ import annotations

import numpy as np
import torch


def sample_eval_negatives(
    users: np.ndarray,
    positive_keys: np.ndarray,
    n_items: int,
    n_negatives: int,
    rng: np.random.Generator,
    chunk: int = 1024,
) -> np.ndarray:
    """``n_negatives`` distinct items per user, none of them among the user's positives.

    Exact uniform sampling without replacement: random keys, positives pushed to +inf, take the
    smallest. ``positive_keys`` are ``user * n_items + item`` of every known positive.
    """
    users = np.asarray(users, dtype=np.int64)
    out = np.empty((len(users), n_negatives), dtype=np.int64)
    pos_sorted = np.unique(positive_keys)
    for start in range(0, len(users), chunk):
        u = users[start : start + chunk]
        keys = rng.random((len(u), n_items))
        lo = np.searchsorted(pos_sorted, u * n_items)
        hi = np.searchsorted(pos_sorted, (u + 1) * n_items)
        rows = np.repeat(np.arange(len(u)), hi - lo)
        cols = np.concatenate([pos_sorted[a:b] for a, b in zip(lo, hi)]) - u[rows] * n_items
        keys[rows, cols] = np.inf
        n_free = n_items - (hi - lo)
        if (n_free < n_negatives).any():
            raise ValueError(f"a user has fewer than {n_negatives} non-positive items")
        out[start : start + chunk] = np.argpartition(keys, n_negatives - 1, axis=1)[:, :n_negatives]
    return out


class NegativeSampler:
    """Training negatives: uniform items, resampled where they hit a known positive.

    Lives on the training device so a whole epoch's negatives come from one call.
    """

    def __init__(self, positive_keys: torch.Tensor, n_items: int) -> None:
        self.sorted_keys = torch.unique(positive_keys)
        self.n_items = n_items

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.n_items + items
        pos = torch.searchsorted(self.sorted_keys, keys).clamp_(max=len(self.sorted_keys) - 1)
        return self.sorted_keys[pos] == keys

    def sample(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        items = torch.randint(
            self.n_items, users.shape, generator=generator, device=users.device
        )
        for _ in range(100):
            hit = self.is_positive(users, items)
            n_hit = int(hit.sum())
            if n_hit == 0:
                return items
            items[hit] = torch.randint(
                self.n_items, (n_hit,), generator=generator, device=users.device
            )
        raise RuntimeError("negative sampling did not converge: users with almost every item")

"""Negative sampling, vectorised: never a Python loop per sample."""

from __future__ import annotations

import numpy as np
import torch

# Below this many (user, item) cells the exhaustive draw is cheap (ML-1M: 22 M), and keeping it
# keeps the test negatives of earlier runs; above it (ML-20M: 3.7 G) rejection sampling is used.
EXHAUSTIVE_CELLS = 100_000_000
TABLE_CELLS = 1 << 26  # training negatives check membership in a table up to 64 M (user, item) cells


def sample_eval_negatives(
    users: np.ndarray,
    positive_keys: np.ndarray,
    n_items: int,
    n_negatives: int,
    rng: np.random.Generator,
    chunk: int = 1024,
) -> np.ndarray:
    """``n_negatives`` distinct items per user, none of them among the user's positives.

    Exact uniform sampling without replacement. ``positive_keys`` are ``user * n_items + item``
    of every known positive.
    """
    users = np.asarray(users, dtype=np.int64)
    pos_sorted = np.unique(positive_keys)
    if len(users) * n_items <= EXHAUSTIVE_CELLS:
        return _exhaustive(users, pos_sorted, n_items, n_negatives, rng, chunk)
    return _by_rejection(users, pos_sorted, n_items, n_negatives, rng, chunk)


def _exhaustive(users: np.ndarray, pos_sorted: np.ndarray, n_items: int, n_negatives: int,
                rng: np.random.Generator, chunk: int) -> np.ndarray:
    """A random key for every item, positives pushed to +inf, the smallest taken."""
    out = np.empty((len(users), n_negatives), dtype=np.int64)
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


def _by_rejection(users: np.ndarray, pos_sorted: np.ndarray, n_items: int, n_negatives: int,
                  rng: np.random.Generator, chunk: int) -> np.ndarray:
    """Uniform draws with replacement; positives and repeats are dropped and the first
    ``n_negatives`` survivors of each row kept: a uniform subset without replacement. Rows left
    short (users with very many positives) are drawn again exhaustively."""
    out = np.empty((len(users), n_negatives), dtype=np.int64)
    width = 2 * n_negatives + 32
    for start in range(0, len(users), chunk):
        u = users[start : start + chunk]
        cand = rng.integers(0, n_items, size=(len(u), width))
        keys = u[:, None] * n_items + cand
        at = np.searchsorted(pos_sorted, keys).clip(max=max(len(pos_sorted) - 1, 0))
        ok = pos_sorted[at] != keys if len(pos_sorted) else np.ones_like(keys, dtype=bool)
        order = np.argsort(cand, axis=1, kind="stable")  # equal items: earliest draw first
        ranked = np.take_along_axis(cand, order, axis=1)
        repeat = np.zeros_like(ok)
        np.put_along_axis(repeat, order[:, 1:], ranked[:, 1:] == ranked[:, :-1], axis=1)
        ok &= ~repeat
        first = np.argsort(~ok, axis=1, kind="stable")[:, :n_negatives]
        out[start : start + chunk] = np.take_along_axis(cand, first, axis=1)
        short = ok.sum(axis=1) < n_negatives
        if short.any():
            rows = np.flatnonzero(short)
            out[start + rows] = _exhaustive(u[rows], pos_sorted, n_items, n_negatives, rng, chunk)
    return out


class NegativeSampler:
    """Training negatives: uniform items, resampled where they hit a known positive.

    Lives on the training device so a whole epoch's negatives come from one call.
    """

    def __init__(self, positive_keys: torch.Tensor, n_items: int) -> None:
        self.sorted_keys = torch.unique(positive_keys)
        self.n_items = n_items
        cells = (int(self.sorted_keys[-1]) // n_items + 1) * n_items if len(self.sorted_keys) else 0
        self.table = None  # a user x item membership table where it is small (ML-1M: 22 MB), else a search
        if 0 < cells <= TABLE_CELLS:
            self.table = torch.zeros(cells, dtype=torch.bool, device=positive_keys.device)
            self.table[self.sorted_keys] = True

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.n_items + items
        if self.table is not None:
            return self.table[keys.clamp(max=len(self.table) - 1)] & (keys < len(self.table))
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

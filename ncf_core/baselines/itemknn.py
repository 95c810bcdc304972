"""ItemKNN-CF with cosine similarity and shrinkage, as Dacrema et al.'s reference implementation
(RecSys 2019 / TOIS 2021): s_ij = x_i · x_j / (‖x_i‖ ‖x_j‖ + shrink), no self-similarity, the top-K
neighbours of each item kept; a user's score for item j is the sum of s_ij over the items i it has."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ncf_core.baselines import topk
from ncf_core.baselines.topk import top_k_rows


@dataclass(frozen=True)
class ItemKNNConfig:
    """Defaults: Dacrema et al.'s implementation (top-K 50, shrink 100)."""

    top_k: int = 50
    shrink: float = 100.0

    def __post_init__(self) -> None:
        if not (isinstance(self.top_k, int) and not isinstance(self.top_k, bool) and self.top_k >= 1):
            raise ValueError(f"top_k must be a whole number >= 1, not {self.top_k!r}")
        if not 0.0 <= self.shrink < float("inf"):
            raise ValueError(f"shrink must be a number >= 0, not {self.shrink!r}")


def similarity(x: sp.csr_matrix, top_k: int, shrink: float) -> sp.csr_matrix:
    """Items × items: column j holds item j's top-K neighbours i with their shrunk cosine s_ij."""
    xt = sp.csr_matrix(x.T)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())

    def of(lo: int, hi: int) -> np.ndarray:  # s_ji for the block's items j and every item i
        return (xt[lo:hi] @ x).toarray().astype(np.float64) / (norms[lo:hi, None] * norms[None, :] + shrink + 1e-6)

    return sp.csr_matrix(top_k_rows(of, x.shape[1], top_k).T)


def fit(x: sp.csr_matrix, cfg: ItemKNNConfig, seed: int, threads: int) -> sp.csr_matrix:
    return similarity(x, cfg.top_k, cfg.shrink)


def memory(n_users: int, n_items: int, cfg: ItemKNNConfig) -> int:
    return topk.memory(n_items, cfg.top_k)

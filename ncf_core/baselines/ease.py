"""EASE^R (Steck, WWW 2019): item × item weights B minimising ||X - XB||² + λ||B||² with diag(B) = 0,
in closed form: P = (XᵀX + λI)⁻¹, B = I - P diag(1 / diag P)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp


@dataclass(frozen=True)
class EASEConfig:
    """Default λ: Dacrema et al. (TOIS 2021, Table 59) tuned on the NCF paper's ML-1M files."""

    l2: float = 1.32e3

    def __post_init__(self) -> None:
        if not 0.0 < self.l2 < float("inf"):
            raise ValueError(f"l2 must be a positive number, not {self.l2!r}")


def weights(x: sp.csr_matrix, l2: float) -> np.ndarray:
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    b = p / -np.diag(p)  # column j divided by -P_jj
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def fit(x: sp.csr_matrix, cfg: EASEConfig, seed: int, threads: int) -> np.ndarray:
    return weights(x, cfg.l2)


def memory(n_users: int, n_items: int, cfg: EASEConfig) -> int:
    """Peak bytes: the float64 Gram matrix, its inverse, and the float32 weights kept."""
    return n_items * n_items * (8 + 8 + 4)

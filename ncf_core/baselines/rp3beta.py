"""RP3β (Paudel et al., TiiS 2017), as Dacrema et al.'s reference implementation: a three-step
random walk item → user → item on the training graph, each transition probability raised to α,
the arrival item's weight divided by its popularity to the power β, no self-loops, the top-K
targets of each item kept; a user's score for item j sums W[i, j] over the items i it has."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ncf_core.baselines import topk
from ncf_core.baselines.topk import top_k_rows


@dataclass(frozen=True)
class RP3betaConfig:
    """Defaults: Dacrema et al. (TOIS 2021, Table 59) tuned on the NCF paper's ML-1M files."""

    alpha: float = 1.08
    beta: float = 0.70
    top_k: int = 546

    def __post_init__(self) -> None:
        if not (isinstance(self.top_k, int) and not isinstance(self.top_k, bool) and self.top_k >= 1):
            raise ValueError(f"top_k must be a whole number >= 1, not {self.top_k!r}")
        for name in ("alpha", "beta"):
            if not 0.0 <= getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a number >= 0, not {getattr(self, name)!r}")


def transitions(x: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(P_ui users × items, P_iu items × users): each row a probability distribution over where a
    walker at that user (item) steps next, uniform over its training interactions."""
    return _rows_to_one(x), _rows_to_one(sp.csr_matrix(x.T))


def _rows_to_one(m: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(m.sum(axis=1), dtype=np.float64).ravel()
    inverse = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inverse) @ m)


def weights(x: sp.csr_matrix, alpha: float, beta: float, top_k: int) -> sp.csr_matrix:
    """Items × items: row i holds the top-K items j reached from i, W[i, j] = (P_iu^α P_ui^α)_ij / pop_j^β."""
    p_ui, p_iu = transitions(x)
    p_ui.data **= alpha
    p_iu.data **= alpha
    popularity = np.asarray(x.sum(axis=0)).ravel()
    scale = np.zeros_like(popularity, dtype=np.float64)
    scale[popularity > 0] = popularity[popularity > 0] ** -beta

    def of(lo: int, hi: int) -> np.ndarray:  # from the block's items (rows) to every item
        return (p_iu[lo:hi] @ p_ui).toarray().astype(np.float64) * scale[None, :]

    return top_k_rows(of, x.shape[1], top_k)


def fit(x: sp.csr_matrix, cfg: RP3betaConfig, seed: int, threads: int) -> sp.csr_matrix:
    return weights(x, cfg.alpha, cfg.beta, cfg.top_k)


def memory(n_users: int, n_items: int, cfg: RP3betaConfig) -> int:
    return topk.memory(n_items, cfg.top_k)

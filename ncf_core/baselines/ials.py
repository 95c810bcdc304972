"""Implicit ALS (Hu, Koren & Volinsky, ICDM 2008) through the ``implicit`` library's solver: a
positive's confidence is 1 + α, every unobserved pair weighs 1, L2 ``regularization`` on both
factor tables. On binary data (the NCF protocol), Dacrema et al.'s linear and log confidence
scalings both come down to a constant confidence, so α alone is searched."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class IALSConfig:
    """Defaults: Dacrema et al. (TOIS 2021, Table 59) tuned on the NCF paper's ML-1M files
    (46 factors, 10 epochs, α 50, reg 1e-5)."""

    factors: int = 46
    regularization: float = 1e-5
    alpha: float = 50.0
    epochs: int = 10

    def __post_init__(self) -> None:
        for name in ("factors", "epochs"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"{name} must be a whole number >= 1, not {v!r}")
        if not 0.0 <= self.regularization < float("inf"):
            raise ValueError(f"regularization must be a number >= 0, not {self.regularization!r}")
        if not 0.0 < self.alpha < float("inf"):
            raise ValueError(f"alpha must be a positive number, not {self.alpha!r}")


def fit(x: sp.csr_matrix, cfg: IALSConfig, seed: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors), seeded by ``seed`` (the initial factors); the solver is the
    library's conjugate gradient. The solver is imported here, on use: listing the variants needs
    only the config."""
    import warnings

    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(), threadpool_limits(1, "blas"):
        warnings.simplefilter("ignore")  # implicit's advice on BLAS threads: they are limited here
        model = AlternatingLeastSquares(factors=cfg.factors, regularization=cfg.regularization, alpha=cfg.alpha,
                                        iterations=cfg.epochs, num_threads=threads,
                                        random_state=np.random.default_rng([seed, 3]))
        model.fit(x, show_progress=False)
    return model.user_factors, model.item_factors


def memory(n_users: int, n_items: int, cfg: IALSConfig) -> int:
    return (n_users + n_items) * cfg.factors * 4 * 3

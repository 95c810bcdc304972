"""Baselines: the fixed floor (``simple``: mean, user-item mean, popularity) and the tuned reference
methods of the field's critiques (Dacrema et al. 2019/2021, Rendle et al. 2020/2022): EASE^R, iALS,
ItemKNN, RP3β. A reference fits on training interactions alone and returns a module the evaluator
scores like any model (``scoring.fit_reference``). A new reference is one file (a frozen config,
``fit`` returning item × item weights or (user, item) factors, ``memory``) and one line in
``REFERENCES``. Nothing here imports torch: the command line lists the variants without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ncf_core.baselines import ease, ials, itemknn, rp3beta
from ncf_core.config import with_overrides


@dataclass(frozen=True)
class Reference:
    name: str
    title: str  # as the literature names it
    config: type  # its settings: a frozen dataclass whose defaults are the published ones
    fit: Callable[..., Any]  # (users × items CSR, config, seed, threads) -> weights, or (user, item) factors
    memory: Callable[[int, int, Any], int]  # peak bytes for (users, items, config)
    source: str  # where the method and its defaults come from


REFERENCES: dict[str, Reference] = {r.name: r for r in (
    Reference("ease", "EASE^R", ease.EASEConfig, ease.fit, ease.memory,
              "Steck 2019; λ from Dacrema et al. 2021, Table 59 (ML-1M)"),
    Reference("ials", "iALS", ials.IALSConfig, ials.fit, ials.memory,
              "Hu et al. 2008 via the implicit library; settings from Dacrema et al. 2021, Table 59 (ML-1M)"),
    Reference("itemknn", "ItemKNN (cosine)", itemknn.ItemKNNConfig, itemknn.fit, itemknn.memory,
              "Dacrema et al. 2019's ItemKNN-CF (their implementation's defaults)"),
    Reference("rp3beta", "RP3β", rp3beta.RP3betaConfig, rp3beta.fit, rp3beta.memory,
              "Paudel et al. 2017; settings from Dacrema et al. 2021, Table 59 (ML-1M)"),
)}
MEMORY_SHARE = 0.5  # a reference may need at most this share of the machine's memory


def reference_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The reference's settings: its published defaults with ``overrides`` (unknown names refused)."""
    return with_overrides(REFERENCES[name].config(), overrides or {})


def memory_problem(name: str, n_users: int, n_items: int, cfg: Any, limit: int | None = None) -> str | None:
    """Why a reference would not fit this machine's memory (swapping instead of failing), if so."""
    ref = REFERENCES[name]
    need = ref.memory(n_users, n_items, cfg)
    limit = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * MEMORY_SHARE) if limit is None else limit
    if need <= limit:
        return None
    return (f"{ref.title} on {n_items:,} items needs {need / 2**30:.1f} GiB (limit {limit / 2**30:.1f} GiB, "
            f"{MEMORY_SHARE:.0%} of this machine's memory)")


__all__ = ["REFERENCES", "Reference", "memory_problem", "reference_config"]

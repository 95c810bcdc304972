"""The neighbourhood models' shared step: an item × item weight matrix that keeps, for each item, its
K largest positive weights, computed BLOCK items at a time (never the dense I × I matrix)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

BLOCK = 1024  # items whose weights are computed at a time (BLOCK × items float64 in memory)


def top_k_rows(weights_of: Callable[[int, int], np.ndarray], n: int, k: int) -> sp.csr_matrix:
    """n × n: row i holds the ``k`` largest positive entries of ``weights_of(lo, hi)[i - lo]`` (the
    weights of items lo..hi-1 to every item), the item itself excluded."""
    k = min(k, n)
    rows, cols, vals = [], [], []
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        block = weights_of(lo, hi)
        block[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        c = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < n else np.broadcast_to(np.arange(n), block.shape)
        r = np.broadcast_to(np.arange(hi - lo)[:, None], c.shape)
        kept = block[r, c]
        keep = kept > 0
        rows.append(r[keep] + lo)
        cols.append(c[keep])
        vals.append(kept[keep])
    return sp.csr_matrix((np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n))


def memory(n_items: int, top_k: int) -> int:
    """Peak bytes: a block of weights (float64, and its copy) and the kept entries."""
    return n_items * BLOCK * 8 * 2 + n_items * min(top_k, n_items) * 16

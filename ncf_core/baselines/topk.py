"""The top-K selection the neighbourhood models share."""

from __future__ import annotations

import numpy as np


def top_k_columns(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) positions of the ``k`` largest positive values of each column of ``block``."""
    k = min(k, block.shape[0])
    rows = np.argpartition(-block, k - 1, axis=0)[:k] if k < block.shape[0] else \
        np.broadcast_to(np.arange(block.shape[0])[:, None], block.shape)
    cols = np.broadcast_to(np.arange(block.shape[1]), rows.shape)
    keep = block[rows, cols] > 0
    return rows[keep], cols[keep]

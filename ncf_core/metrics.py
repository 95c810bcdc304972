"""Metrics, vectorised over users. Every function returns per-row values; means are ``.mean()``.

Per-user values are kept because the harness runs paired tests on them.
Ties are counted against the model: a constant scorer gets no credit.
"""

from __future__ import annotations

import math

import torch


def rating_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """MAE, RMSE and R² on the normalised (0-1) scale."""
    err = pred.double() - target.double()
    sse = float((err**2).sum())
    sst = float(((target.double() - target.double().mean()) ** 2).sum())
    return {
        "mae": float(err.abs().mean()),
        "rmse": math.sqrt(sse / len(err)),
        "r2": 1.0 - sse / sst if sst > 0 else float("nan"),
    }


def sampled_ranking(scores: torch.Tensor, k: int, present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """HR@k and NDCG@k per row of a (rows, 1 + negatives) score matrix, positive in column 0.

    ``present`` (rows, negatives), where given, is False at padded slots of shorter rows: those
    are not candidates and never count against the positive, whatever their score.
    """
    scores = _no_nan(scores)
    pos = scores[:, :1]
    ahead = scores[:, 1:] >= pos  # ties go against the positive
    if present is not None:
        ahead &= present
    rank = ahead.sum(dim=1)  # 0 = positive ranked first
    hit = rank < k
    ndcg = torch.where(hit, 1.0 / torch.log2(rank.double() + 2.0), torch.zeros((), dtype=torch.double))
    return {f"hr@{k}": hit.double(), f"ndcg@{k}": ndcg}


def full_ranking(scores: torch.Tensor, relevant: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """HR@k, NDCG@k, Recall@k per user, ranking every item.

    ``scores`` (users, items) must already hold -inf at items seen in training; ``relevant``
    is a boolean (users, items) matrix of held-out positives. Ties go against the model: a
    relevant item is placed after every other item of equal score (after the earlier relevant
    ones among themselves), so a constant scorer gets 0, as in ``sampled_ranking``.
    """
    scores = _no_nan(scores)
    rows, cols = relevant.nonzero(as_tuple=True)
    own = scores[rows, cols]
    row_scores = scores[rows]
    ahead = ((row_scores >= own[:, None]) & ~relevant[rows]).sum(dim=1)  # irrelevant, score >= own
    rel_scores = torch.where(relevant[rows], row_scores, torch.full_like(row_scores, float("-inf")))
    ahead += (rel_scores > own[:, None]).sum(dim=1)  # relevant with a higher score
    ahead += ((rel_scores == own[:, None]) & (torch.arange(scores.shape[1], device=scores.device)
                                               < cols[:, None])).sum(dim=1)  # tied relevant, earlier
    hit = ahead < k
    gain = torch.where(hit, 1.0 / torch.log2(ahead.double() + 2.0), torch.zeros((), dtype=torch.double))
    n_users = scores.shape[0]
    hits = torch.zeros(n_users, dtype=torch.double, device=scores.device).index_add_(0, rows, hit.double())
    dcg = torch.zeros(n_users, dtype=torch.double, device=scores.device).index_add_(0, rows, gain)
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, device=scores.device, dtype=torch.double))
    n_rel = relevant.sum(dim=1).double()
    ideal = torch.cumsum(discounts, 0)[(n_rel.clamp(1, k) - 1).long()]
    return {
        f"full_hr@{k}": (hits > 0).double(),
        f"full_ndcg@{k}": dcg / ideal,
        f"full_recall@{k}": hits / n_rel.clamp(min=1),
    }


def _no_nan(scores: torch.Tensor) -> torch.Tensor:
    """A NaN score ranks last (it would otherwise compare false with everything and rank first)."""
    return torch.nan_to_num(scores, nan=float("-inf")) if scores.isnan().any() else scores

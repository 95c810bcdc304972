"""Scoring a trained model on the validation or test part of a split, vectorised."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ncf_core import metrics
from ncf_core.data.anomalies import PAD
from ncf_core.data.splits import Split
from ncf_core.losses import loss_fn, predictions
from ncf_core.tasks import task_of


@torch.no_grad()
def score(model: nn.Module, users: torch.Tensor, items: torch.Tensor,
          batch: int = 1 << 18) -> torch.Tensor:
    """Logits for (user, item) pairs of any shape, in large slices."""
    model.eval()
    flat_u, flat_i = users.reshape(-1), items.reshape(-1)
    out = torch.cat([model(flat_u[lo:lo + batch], flat_i[lo:lo + batch])
                     for lo in range(0, len(flat_u), batch)])
    return out.reshape(users.shape).float()


@torch.no_grad()
def grid(model: nn.Module, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Logits of every user for every item, (users, items): the model's own ``grid`` where it has one
    (one product instead of a forward per pair), else its forward on every pair."""
    model.eval()
    if hasattr(model, "grid"):
        return model.grid(users, items).float()
    return score(model, users[:, None].expand(-1, len(items)), items.expand(len(users), -1))


@dataclass
class Evaluation:
    """``per_user[name][j]`` is metric ``name`` (or, for ratings, the absolute error) of entry j,
    whose user is ``users[name][j]``: a test row for sampled metrics and ratings, a user for the
    full ranking."""

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]
    n_scored: int
    seconds: float
    users: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.n_scored / max(self.seconds, 1e-12)

    def by_user(self) -> dict[str, np.ndarray]:
        """Each metric per user ({"user": ids, name: values}), for tests paired over users: the mean
        over a user's rows for ranking metrics; for ratings the RMSE and MAE over the user's test
        ratings (0-1 scale, as the trial's metrics)."""
        if "abs_error" in self.per_user:
            users, row = np.unique(self.users["abs_error"], return_inverse=True)
            err, n = self.per_user["abs_error"], np.bincount(row)
            return {"user": users, "rmse": np.sqrt(np.bincount(row, err**2) / n), "mae": np.bincount(row, err) / n}
        users = np.unique(np.concatenate(list(self.users.values())))
        out = {"user": users}
        for name, values in self.per_user.items():
            own, row = np.unique(self.users[name], return_inverse=True)
            out[name] = np.full(len(users), np.nan)
            out[name][np.searchsorted(users, own)] = np.bincount(row, values) / np.bincount(row)
        return out


class Evaluator:
    """Holds one split part on the device; ranking parts are (rows, 1 + negatives) candidates."""

    def __init__(self, split: Split, part: str, device: torch.device | str, k: int = 10) -> None:
        self.split, self.part, self.k = split, part, k
        self.device = torch.device(device)
        data = getattr(split, part)
        self.task = split.task
        self.implicit = task_of(split.task).implicit  # rank each held-out positive among candidates
        self.users = torch.from_numpy(data.users).to(self.device)
        self.items = torch.from_numpy(data.items).to(self.device)
        self.target = torch.from_numpy(data.target).to(self.device)
        self.present = None
        if self.implicit:
            negatives = getattr(split, f"{part}_negatives")
            if negatives is None:
                raise ValueError(f"ranking split has no {part} negatives")
            neg = torch.from_numpy(negatives).to(self.device)
            self.present = (neg != PAD) if bool((neg == PAD).any()) else None  # a published file's short rows
            self.cand_items = torch.cat([self.items[:, None], neg.clamp(min=0)], dim=1)
            self.cand_users = self.users[:, None].expand_as(self.cand_items)
        self.selection_metric = task_of(self.task).selection_metric(k)

    def loss_and_metric(self, model: nn.Module) -> tuple[float, float]:
        """Validation loss (same loss as training) and the model-selection metric."""
        if not self.implicit:
            logits = score(model, self.users, self.items)
            loss = float(loss_fn(self.task, logits, self.target))
            scored = metrics.rating_metrics(predictions(self.task, logits), self.target)
            return loss, float(scored[self.selection_metric])
        logits = score(model, self.cand_users, self.cand_items)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        if self.present is None:
            loss = float(F.binary_cross_entropy_with_logits(logits, labels))
        else:  # padded slots are no candidates
            weight = torch.cat([torch.ones_like(self.present[:, :1]), self.present], dim=1).float()
            loss = float(F.binary_cross_entropy_with_logits(logits, labels, weight=weight, reduction="sum")
                         / weight.sum())
        per = metrics.sampled_ranking(logits, self.k, self.present)
        return loss, float(per[self.selection_metric].mean())

    def evaluate(self, model: nn.Module, full: bool = True) -> Evaluation:
        """Metrics on this part; the timing covers scoring the evaluation pairs only."""
        start = self._clock()
        if not self.implicit:
            logits = score(model, self.users, self.items)
        else:
            logits = score(model, self.cand_users, self.cand_items)
        seconds = self._clock() - start
        if not self.implicit:
            pred = predictions(self.task, logits)
            out = metrics.rating_metrics(pred, self.target)
            per_row = {"abs_error": (pred - self.target).abs().double().cpu().numpy()}
            users = {"abs_error": self.users.cpu().numpy()}
        else:
            per = metrics.sampled_ranking(logits, self.k, self.present)
            rows = self.users.cpu().numpy()
            users = dict.fromkeys(per, rows)
            if full:
                ranked = self._full_ranking(model)
                per.update(ranked)
                users.update(dict.fromkeys(ranked, np.unique(rows)))  # _full_ranking's order: sorted users
            out = {name: float(v.mean()) for name, v in per.items()}
            per_row = {name: v.cpu().numpy() for name, v in per.items()}
        return Evaluation(out, per_row, logits.numel(), seconds, users)

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _full_ranking(self, model: nn.Module, chunk: int = 1024) -> dict[str, torch.Tensor]:
        """Rank every item not seen in training (train and validation positives masked), per user."""
        split, n_items = self.split, self.split.n_items
        seen = np.unique(np.concatenate([split.train.keys(), split.valid.keys()]))
        seen_keys = torch.from_numpy(seen).to(self.device)
        held_keys = torch.sort(self.users * n_items + self.items).values
        users = torch.unique(self.users)  # sorted: a chunk's keys are one slice of the sorted keys
        row_of = torch.full((split.n_users,), -1, dtype=torch.long, device=self.device)
        all_items = torch.arange(n_items, device=self.device)
        parts: dict[str, list[torch.Tensor]] = {}
        for lo in range(0, len(users), chunk):
            u = users[lo:lo + chunk]
            row_of[u] = torch.arange(len(u), device=self.device)
            scores = grid(model, u, all_items)
            scores[_cells(seen_keys, u, row_of, n_items)] = float("-inf")
            relevant = torch.zeros_like(scores, dtype=torch.bool)
            relevant[_cells(held_keys, u, row_of, n_items)] = True
            row_of[u] = -1
            for name, v in metrics.full_ranking(scores, relevant, self.k).items():
                parts.setdefault(name, []).append(v)
        return {name: torch.cat(v) for name, v in parts.items()}


def _cells(sorted_keys: torch.Tensor, users: torch.Tensor, row_of: torch.Tensor,
           n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, item) cells, in a chunk of sorted ``users``, of sorted ``user * n_items + item`` keys."""
    bounds = torch.stack([users[0] * n_items, (users[-1] + 1) * n_items])
    lo, hi = torch.searchsorted(sorted_keys, bounds).tolist()
    keys = sorted_keys[lo:hi]
    rows = row_of[keys // n_items]  # -1: a user in the id range but not in the chunk
    keep = rows >= 0
    return rows[keep], (keys % n_items)[keep]

"""Train / validation / test splits. Model selection only ever sees ``valid``.

Rating task: seeded random ratio split (the seed write-up's 80/20), validation carved from train.
Ranking task (NCF protocol): leave-one-out by latest timestamp, each held-out positive ranked
against sampled negatives that are never the user's positives; validation is the latest
remaining interaction of each user, carved from train the same way. The held-out item does not
depend on the seed: among several items at a user's latest timestamp, the one last in file order
is held out (a stable sort by time, as the NCF authors' preprocessing does). Repeated (user, item)
pairs are reduced to their latest row before splitting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ncf_core.data.anomalies import Anomaly
from ncf_core.data.interactions import Interactions
from ncf_core.data.negatives import sample_eval_negatives
from ncf_core.tasks import N_EVAL_NEGATIVES, task_of


@dataclass(frozen=True, eq=False)
class Split:
    """``*_negatives[j]`` are the candidates ranked against positive ``j`` of ``valid``/``test``
    (``PAD`` marks an empty slot of a published file's shorter row). ``anomalies``: what the files
    it was read from held that a clean split would not (``ncf_core.data.anomalies``)."""

    task: str
    train: Interactions
    valid: Interactions
    test: Interactions
    valid_negatives: np.ndarray | None = None
    test_negatives: np.ndarray | None = None
    anomalies: tuple[Anomaly, ...] = ()

    @property
    def n_users(self) -> int:
        return self.train.n_users

    def fingerprint(self) -> str:
        """A digest of the given split: its three parts and its negatives."""
        h = hashlib.sha256("".join(p.fingerprint() for p in (self.train, self.valid, self.test)).encode())
        for a in (self.valid_negatives, self.test_negatives):
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    @property
    def n_items(self) -> int:
        return self.train.n_items


def ratio_split(
    data: Interactions, test_fraction: float, rng: np.random.Generator
) -> tuple[Interactions, Interactions]:
    order = rng.permutation(len(data))
    n_test = int(round(test_fraction * len(data)))
    return data.subset(np.sort(order[n_test:])), data.subset(np.sort(order[:n_test]))


def leave_one_out(data: Interactions) -> tuple[Interactions, Interactions]:
    """Hold out each user's latest interaction (ties: the last in file order; users with one row
    stay in train). No randomness: the held-out item is the same for every seed."""
    ts = data.timestamps if data.timestamps is not None else np.zeros(len(data), np.int64)
    order = np.lexsort((np.arange(len(data)), ts, data.users))  # by user, then time, then file order
    users_sorted = data.users[order]
    last = np.r_[users_sorted[1:] != users_sorted[:-1], True]
    first = np.r_[True, users_sorted[1:] != users_sorted[:-1]]
    held = order[last & ~first]
    mask = np.zeros(len(data), bool)
    mask[held] = True
    return data.subset(~mask), data.subset(np.sort(held))


def _leave_one_out(data: Interactions, fraction: float, rng: np.random.Generator) -> tuple[Interactions, Interactions]:
    return leave_one_out(data)


# How a task holds rows out (Task.split): (rows, fraction, rng) -> (kept, held out).
SPLITTERS: dict[str, Callable[[Interactions, float, np.random.Generator], tuple[Interactions, Interactions]]] = {
    "ratio": ratio_split, "leave-one-out": _leave_one_out,
}


def make_split(
    data: Interactions,
    task: str,
    seed: int,
    *,
    test_fraction: float = 0.2,
    valid_fraction: float = 0.1,
    n_eval_negatives: int = N_EVAL_NEGATIVES,
) -> Split:
    """One seed fixes the whole split, including the evaluation negatives."""
    rng = np.random.default_rng([seed, 1])
    kind = task_of(task)
    if data.has_duplicate_pairs():
        data = data.unique_pairs()
    hold_out = SPLITTERS[kind.split]
    rest, test = hold_out(data, test_fraction, rng)
    if not kind.implicit:
        train, valid = hold_out(rest, valid_fraction, rng)
        _check_parts(train, valid, test)
        return Split(task, train, valid, test)
    all_keys = data.keys()
    _check_negatives(data, n_eval_negatives)
    test_neg = sample_eval_negatives(test.users, all_keys, data.n_items, n_eval_negatives, rng)
    return add_validation(Split(task, rest, rest, test, None, test_neg), seed, n_eval_negatives,
                          valid_fraction=valid_fraction, positive_keys=all_keys)


def add_validation(
    split: Split,
    seed: int,
    n_eval_negatives: int = N_EVAL_NEGATIVES,
    *,
    valid_fraction: float = 0.1,
    positive_keys: np.ndarray | None = None,
) -> Split:
    """Carve the validation set out of ``split.train`` (the test set is never touched)."""
    rng = np.random.default_rng([seed, 2])
    kind = task_of(split.task)
    train, valid = SPLITTERS[kind.split](split.train, valid_fraction, rng)
    _check_parts(train, valid, split.test)
    if not kind.implicit:
        return replace(split, train=train, valid=valid)
    keys = split.train.keys() if positive_keys is None else positive_keys
    keys = np.concatenate([keys, split.test.keys()])
    neg = sample_eval_negatives(valid.users, keys, split.n_items, n_eval_negatives, rng)
    return replace(split, train=train, valid=valid, valid_negatives=neg)


def _check_parts(train: Interactions, valid: Interactions, test: Interactions) -> None:
    """A split with an empty part cannot be trained or judged (e.g. every user has one row)."""
    for name, part in (("training", train), ("validation", valid), ("test", test)):
        if len(part) == 0:
            raise ValueError(f"the {name} split is empty ({len(train) + len(valid) + len(test)} rows; "
                             "leave-one-out needs users with at least 3 interactions)")


def _check_negatives(data: Interactions, n: int) -> None:
    most = int(np.bincount(data.users, minlength=1).max()) if len(data) else 0
    if data.n_items - most < n:
        raise ValueError(f"{data.n_items} items: a user with {most} positives leaves fewer than {n} "
                         "items to draw evaluation negatives from")


def refit_split(split: Split) -> Split:
    """Training data given back its validation part, for the refit after model selection (the NCF
    protocol trains on everything but the test item). ``valid`` is kept only to satisfy the type:
    a refit never looks at it."""
    return replace(split, train=split.train.concat(split.valid))

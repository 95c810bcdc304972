"""The NCF paper's files: ``P.train.rating``, ``P.test.rating``, ``P.test.negative``.

Ids are 0-based and tab-separated; ``P.test.negative`` lines read ``(user,item)\\tneg1\\t...``.
The split comes pre-made: only the validation set is carved (from train) by the caller.

The test negatives are read as the reference evaluator (He et al.'s ``evaluate.py``) scores them:
it puts the test item and a row's negatives into one dictionary keyed by item, so an item is
scored once. A negative equal to the row's test item is therefore dropped from its candidates, a
repeated negative counts once, and a negative that is also a training positive of the user stays
a negative. Rows left shorter are padded with ``PAD``, a slot that never ranks above anything.
Each kind of quirk is counted (``Split.anomalies``); ``strict=True`` refuses any of them instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ncf_core.data._io import numeric, read_table, require_file
from ncf_core.data.anomalies import PAD, Anomaly
from ncf_core.data.interactions import Interactions
from ncf_core.data.splits import Split
from ncf_core.errors import DataError
from ncf_core.tasks import task_of

COLUMNS = ["user", "item", "rating", "timestamp"]


def _read_rating(path: Path) -> pd.DataFrame:
    frame = read_table(path, [0, 1], sep="\t", header=None)
    frame.columns = COLUMNS[: frame.shape[1]] + [f"c{i}" for i in range(len(COLUMNS), frame.shape[1])]
    for column in ("user", "item"):
        values = numeric(path, frame, column, np.int64)
        if (values < 0).any():
            raise DataError(path, f"negative {column} id")
    return frame


def _read_negatives(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, negatives padded with PAD to the widest row, each row's line number)."""
    require_file(path)
    users, items, negs, lines = [], [], [], []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:  # a byte-order mark changes no id: read past it, as a text editor does
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DataError(path, f"line {number} is not UTF-8 text") from None
            if not line.strip():
                continue
            head, *rest = line.rstrip("\n").split("\t")
            try:
                user, item = head.strip("()").split(",")
                users.append(int(user))
                items.append(int(item))
                negs.append([int(x) for x in rest if x.strip()])
            except ValueError:
                raise DataError(path, f"line {number} is not '(user,item)\\tneg...' with integer ids") from None
            if min(negs[-1], default=0) < 0:
                raise DataError(path, f"negative item id {min(negs[-1])} on line {number}")
            lines.append(number)
    if not negs:
        raise DataError(path, "no rows")
    width = max(len(n) for n in negs)
    if width == 0:
        raise DataError(path, "no row lists any negative")
    padded = np.full((len(negs), width), PAD, dtype=np.int64)
    for row, n in enumerate(negs):
        padded[row, :len(n)] = n
    return np.array(users), np.array(items), padded, np.array(lines)


def _first_repeats(negatives: np.ndarray) -> np.ndarray:
    """True where an entry repeats an earlier entry of its row (the first occurrence is kept)."""
    order = np.argsort(negatives, axis=1, kind="stable")
    ranked = np.take_along_axis(negatives, order, axis=1)
    repeat_sorted = np.zeros_like(ranked, dtype=bool)
    repeat_sorted[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    out = np.zeros_like(repeat_sorted)
    np.put_along_axis(out, order, repeat_sorted, axis=1)
    return out & (negatives != PAD)


def read_candidates(neg_path: Path, test_users: np.ndarray, test_items: np.ndarray, n_items: int,
                    train_keys: np.ndarray, train_name: str, lines: np.ndarray, negatives: np.ndarray,
                    strict: bool) -> tuple[np.ndarray, tuple[Anomaly, ...]]:
    """Each row's distinct negatives other than its test item, in file order, PAD-padded; and what
    was odd. ``strict``: the first odd entry, in file order, is a one-line error instead."""
    present = negatives != PAD
    is_test = present & (negatives == test_items[:, None])
    repeat = _first_repeats(negatives) & ~is_test
    keys = test_users[:, None] * n_items + np.where(present, negatives, 0)
    in_train = present & ~is_test & ~repeat & np.isin(keys, np.unique(train_keys))
    known = np.union1d(train_keys % n_items, test_items)  # an id beyond these only grows the tables
    unseen = present & ~is_test & ~repeat & ~np.isin(negatives, known)
    widths = present.sum(axis=1)
    short = widths < widths.max()
    kinds = [
        (is_test, "the test item is among the row's negatives", "dropped from its candidates (the reference "
                  "scores an item once: the user ranks the test item among the other negatives)",
         lambda r, c: f"negative {negatives[r, c]} equals the test item"),
        (repeat, "a negative is repeated", "counted once, as the reference scores it",
         lambda r, c: f"negative {negatives[r, c]} is repeated"),
        (in_train, f"a negative is a positive of the user in {train_name}",
         "kept as a negative, as the reference scores it",
         lambda r, c: f"negative {negatives[r, c]} is a positive of the user in {train_name}"),
        (unseen, "a negative is an item no rating file holds",
         "kept as a negative, scored from an embedding no training step moves",
         lambda r, c: f"negative {negatives[r, c]} is an item no rating file holds"),
        (short[:, None], f"fewer negatives than the widest row ({widths.max()})",
         "ranked among the negatives they have", lambda r, c: f"has {widths[r]} negatives, other lines "
                                                              f"{widths.max()}"),
    ]
    anomalies = []
    first_error: tuple[int, str] | None = None
    for mask, kind, action, describe in kinds:
        rows = mask.any(axis=1)
        if not rows.any():
            continue
        row = int(np.flatnonzero(rows)[0])
        col = int(np.flatnonzero(mask[row])[0])
        anomalies.append(Anomaly(neg_path.name, kind, int(rows.sum()), len(rows), int(mask.sum()),
                                 int(lines[row]), action))
        if first_error is None or lines[row] < first_error[0]:
            first_error = (int(lines[row]), describe(row, col))
    if strict and first_error is not None:
        raise DataError(neg_path, f"line {first_error[0]}: {first_error[1]} (--strict-files)")
    keep = present & ~is_test & ~repeat
    order = np.argsort(~keep, axis=1, kind="stable")  # kept entries first, in file order
    out = np.take_along_axis(np.where(keep, negatives, PAD), order, axis=1)
    return out[:, :max(int(keep.sum(axis=1).max()), 1)], tuple(anomalies)


def _repeated_test_users(path: Path, users: np.ndarray, strict: bool) -> tuple[Anomaly, ...]:
    """Leave-one-out files hold one test row a user; the reference scores every row on its own, so a
    user with two rows weighs twice in sampled HR/NDCG (full ranking ranks a user's test items once)."""
    _, first = np.unique(users, return_index=True)
    again = np.ones(len(users), dtype=bool)
    again[first] = False
    if not again.any():
        return ()
    row = int(np.flatnonzero(again)[0])
    if strict:
        raise DataError(path, f"line {row + 1}: user {users[row]} has a second test row (--strict-files)")
    return (Anomaly(path.name, "a user has more than one test row", len(np.unique(users[again])), len(users),
                    int(again.sum()), row + 1, "each row scored on its own, as the reference scores it"),)


def _check_dense(kind: str, parts: list[tuple[Path, np.ndarray]]) -> None:
    """The paper's ids are 0-based dense codes; a stray huge id would size an embedding table to it."""
    distinct = len(np.unique(np.concatenate([ids for _, ids in parts])))
    for path, ids in parts:
        if len(ids) and int(ids.max()) > 2 * distinct + 1000:
            raise DataError(path, f"{kind} id {int(ids.max())} for {distinct} distinct {kind}s: "
                                  "NCF files need 0-based dense ids")


def load(prefix: str | Path, *, name: str = "", strict: bool = False) -> Split:
    """A ranking split with the given test negatives, read as the reference reads them; ``valid`` is
    ``train`` until carved. Problems that would make a number wrong (a test pair also in training,
    rows that do not match the test file, ids that are not dense codes) are always errors."""
    prefix = str(prefix)
    train_path, test_path = Path(prefix + ".train.rating"), Path(prefix + ".test.rating")
    neg_path = Path(prefix + ".test.negative")
    train_frame, test_frame = _read_rating(train_path), _read_rating(test_path)
    n_users = int(train_frame["user"].max()) + 1
    n_items = int(max(train_frame["item"].max(), test_frame["item"].max())) + 1
    neg_users, neg_items, negatives, lines = _read_negatives(neg_path)
    test_users, test_items = test_frame["user"].to_numpy(), test_frame["item"].to_numpy()
    if len(neg_users) != len(test_frame) or (neg_users != test_users).any() or (neg_items != test_items).any():
        raise DataError(neg_path, f"(user,item) pairs do not match {test_path.name} line by line")
    unknown_users = test_users >= n_users
    if unknown_users.any():
        row = int(np.flatnonzero(unknown_users)[0])
        raise DataError(test_path, f"unknown user id {test_users[row]} on line {row + 1}")
    n_items = max(n_items, int(negatives.max()) + 1)
    _check_dense("user", [(train_path, train_frame["user"].to_numpy())])
    _check_dense("item", [(train_path, train_frame["item"].to_numpy()), (test_path, test_items),
                          (neg_path, negatives[negatives != PAD])])
    test_keys = test_users * n_items + test_items
    train_keys = train_frame["user"].to_numpy() * n_items + train_frame["item"].to_numpy()
    leaked = np.isin(test_keys, train_keys)
    if leaked.any():
        row = int(np.flatnonzero(leaked)[0])
        raise DataError(test_path, f"line {row + 1}: the test pair is also in {train_path.name}")
    repeated = _repeated_test_users(test_path, test_users, strict)
    candidates, anomalies = read_candidates(neg_path, test_users, test_items, n_items, train_keys,
                                            train_path.name, lines, negatives, strict)
    anomalies = repeated + anomalies

    def interactions(frame: pd.DataFrame) -> Interactions:
        ts = frame["timestamp"].to_numpy() if "timestamp" in frame else None
        return Interactions.from_codes(
            frame["user"].to_numpy(), frame["item"].to_numpy(), np.ones(len(frame)),
            timestamps=ts, n_users=n_users, n_items=n_items, name=name or Path(prefix).name,
        )

    train = interactions(train_frame)
    if train.has_duplicate_pairs():
        raise DataError(train_path, "repeats a (user, item) pair")
    return Split("ranking", train, train, interactions(test_frame), None, candidates, anomalies=anomalies)


def load_named(folder: Path, *, stem: str, task: str = "ranking", strict: bool = False) -> Split:
    """The paper's files as fetched by ``bench data fetch ncf-<stem>``: ``<folder>/<stem>.*``."""
    if not task_of(task).implicit:
        raise DataError(folder, "the NCF paper's files are implicit feedback: a ranking split")
    return load(Path(folder) / stem, name=f"ncf-{stem}", strict=strict)

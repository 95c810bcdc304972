"""The NCF paper's files: ``P.train.rating``, ``P.test.rating``, ``P.test.negative``.

Ids are 0-based and tab-separated; ``P.test.negative`` lines read ``(user,item)\\tneg1\\t...``.
The given test negatives are used exactly as they are. The split comes pre-made: only the
validation set is carved (from train) by the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ncf_core.data._io import numeric, read_table, require_file
from ncf_core.data.interactions import Interactions
from ncf_core.data.splits import Split
from ncf_core.errors import DataError

COLUMNS = ["user", "item", "rating", "timestamp"]


def _read_rating(path: Path) -> pd.DataFrame:
    frame = read_table(path, [0, 1], sep="\t", header=None)
    frame.columns = COLUMNS[: frame.shape[1]] + [f"c{i}" for i in range(len(COLUMNS), frame.shape[1])]
    for column in ("user", "item"):
        values = numeric(path, frame, column, np.int64)
        if (values < 0).any():
            raise DataError(path, f"negative {column} id")
    return frame


def _read_negatives(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    require_file(path)
    users, items, negs = [], [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
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
    if not negs:
        raise DataError(path, "no rows")
    widths = {len(n) for n in negs}
    if len(widths) != 1:
        raise DataError(path, f"lines carry different numbers of negatives: {sorted(widths)}")
    return np.array(users), np.array(items), np.array(negs, dtype=np.int64)


def _check_dense(kind: str, parts: list[tuple[Path, np.ndarray]]) -> None:
    """The paper's ids are 0-based dense codes; a stray huge id would size an embedding table to it."""
    distinct = len(np.unique(np.concatenate([ids for _, ids in parts])))
    for path, ids in parts:
        if len(ids) and int(ids.max()) > 2 * distinct + 1000:
            raise DataError(path, f"{kind} id {int(ids.max())} for {distinct} distinct {kind}s: "
                                  "NCF files need 0-based dense ids")


def load(prefix: str | Path, *, name: str = "") -> Split:
    """A ranking split with the given test negatives; ``valid`` is ``train`` until carved."""
    prefix = str(prefix)
    train_path, test_path = Path(prefix + ".train.rating"), Path(prefix + ".test.rating")
    neg_path = Path(prefix + ".test.negative")
    train_frame, test_frame = _read_rating(train_path), _read_rating(test_path)
    n_users = int(train_frame["user"].max()) + 1
    n_items = int(max(train_frame["item"].max(), test_frame["item"].max())) + 1
    neg_users, neg_items, negatives = _read_negatives(neg_path)
    if len(neg_users) != len(test_frame) or (neg_users != test_frame["user"].to_numpy()).any() \
            or (neg_items != test_frame["item"].to_numpy()).any():
        raise DataError(neg_path, f"(user,item) pairs do not match {test_path.name} line by line")
    unknown_users = test_frame["user"].to_numpy() >= n_users
    if unknown_users.any():
        row = int(np.flatnonzero(unknown_users)[0])
        raise DataError(test_path, f"unknown user id {test_frame['user'].iloc[row]} on line {row + 1}")
    n_items = max(n_items, int(negatives.max()) + 1)
    _check_dense("user", [(train_path, train_frame["user"].to_numpy())])
    _check_dense("item", [(train_path, train_frame["item"].to_numpy()), (test_path, test_frame["item"].to_numpy()),
                          (neg_path, negatives.ravel())])
    test_keys = test_frame["user"].to_numpy() * n_items + test_frame["item"].to_numpy()
    train_keys = train_frame["user"].to_numpy() * n_items + train_frame["item"].to_numpy()
    leaked = np.isin(test_keys, train_keys)
    if leaked.any():
        row = int(np.flatnonzero(leaked)[0])
        raise DataError(test_path, f"line {row + 1}: the test pair is also in {train_path.name}")
    neg_keys = test_frame["user"].to_numpy()[:, None] * n_items + negatives
    for problem, bad in (("equals the test item", negatives == test_frame["item"].to_numpy()[:, None]),
                         (f"is a positive of the user in {train_path.name}", np.isin(neg_keys, train_keys))):
        if bad.any():
            row, col = (int(x[0]) for x in np.nonzero(bad))
            raise DataError(neg_path, f"line {row + 1}: negative {negatives[row, col]} {problem}")

    def interactions(frame: pd.DataFrame) -> Interactions:
        ts = frame["timestamp"].to_numpy() if "timestamp" in frame else None
        return Interactions.from_codes(
            frame["user"].to_numpy(), frame["item"].to_numpy(), np.ones(len(frame)),
            timestamps=ts, n_users=n_users, n_items=n_items, name=name or Path(prefix).name,
        )

    train = interactions(train_frame)
    if train.has_duplicate_pairs():
        raise DataError(train_path, "repeats a (user, item) pair")
    return Split("ranking", train, train, interactions(test_frame), None, negatives)


def load_named(folder: Path, *, stem: str, task: str = "ranking") -> Split:
    """The paper's files as fetched by ``bench data fetch ncf-<stem>``: ``<folder>/<stem>.*``."""
    if task != "ranking":
        raise DataError(folder, "the NCF paper's files are a ranking split")
    return load(Path(folder) / stem, name=f"ncf-{stem}")

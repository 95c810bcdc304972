"""One compact interaction type, whatever the source."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True, eq=False)
class Interactions:
    """User-item interactions as integer codes.

    ``target`` is the rating scaled to [0, 1] (rating / max rating) for the rating task; the
    ranking task treats every row as a positive. ``item_features`` is indexed by item code.
    """

    users: np.ndarray
    items: np.ndarray
    target: np.ndarray
    n_users: int
    n_items: int
    timestamps: np.ndarray | None = None
    item_features: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    name: str = ""

    def fingerprint(self) -> str:
        """A digest of what a model sees of the data (ids, targets, order, sizes, item features): the
        same label over other rows is told apart."""
        h = hashlib.sha256(f"{self.n_users},{self.n_items},{len(self.users)}".encode())
        for a in (self.users, self.items, self.target, self.timestamps, self.item_features):
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def __post_init__(self) -> None:
        n = len(self.users)
        if len(self.items) != n or len(self.target) != n:
            raise ValueError("users, items and target must have equal length")
        if self.timestamps is not None and len(self.timestamps) != n:
            raise ValueError("timestamps must match users in length")
        if self.item_features is not None and self.item_features.shape[0] != self.n_items:
            raise ValueError("item_features needs one row per item")

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, index: np.ndarray) -> Interactions:
        """Rows ``index`` (a mask or positions); ids, item features and sizes are kept."""
        ts = None if self.timestamps is None else self.timestamps[index]
        return replace(
            self,
            users=self.users[index],
            items=self.items[index],
            target=self.target[index],
            timestamps=ts,
        )

    def concat(self, other: Interactions) -> Interactions:
        """These rows, then ``other``'s (same ids, sizes and item features)."""
        if (self.n_users, self.n_items) != (other.n_users, other.n_items):
            raise ValueError("concatenated interactions must share their id spaces")
        ts = None if self.timestamps is None or other.timestamps is None else \
            np.concatenate([self.timestamps, other.timestamps])
        return replace(self, users=np.concatenate([self.users, other.users]),
                       items=np.concatenate([self.items, other.items]),
                       target=np.concatenate([self.target, other.target]), timestamps=ts)

    def has_duplicate_pairs(self) -> bool:
        return len(np.unique(self.keys())) != len(self)

    def unique_pairs(self) -> Interactions:
        """One row per (user, item): the latest (by timestamp, then by file order). A repeated pair
        would otherwise sit on both sides of a split, a test positive leaked into training."""
        keys = self.keys()
        ts = self.timestamps if self.timestamps is not None else np.zeros(len(self), np.int64)
        order = np.lexsort((np.arange(len(self)), ts, keys))  # by pair, then time, then position
        last = np.r_[keys[order][1:] != keys[order][:-1], True]
        return self.subset(np.sort(order[last]))

    @property
    def n_features(self) -> int:
        return 0 if self.item_features is None else int(self.item_features.shape[1])

    def keys(self) -> np.ndarray:
        """One int64 per (user, item) pair, for vectorised membership tests."""
        return self.users.astype(np.int64) * self.n_items + self.items.astype(np.int64)

    @classmethod
    def from_codes(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        target: np.ndarray,
        *,
        timestamps: np.ndarray | None = None,
        item_features: np.ndarray | None = None,
        feature_names: tuple[str, ...] = (),
        n_users: int | None = None,
        n_items: int | None = None,
        name: str = "",
    ) -> Interactions:
        users = np.require(users, dtype=np.int64, requirements="W")  # torch wants writable arrays
        items = np.require(items, dtype=np.int64, requirements="W")
        return cls(
            users=users,
            items=items,
            target=np.require(target, dtype=np.float32, requirements="W"),
            n_users=int(n_users if n_users is not None else (users.max() + 1 if len(users) else 0)),
            n_items=int(n_items if n_items is not None else (items.max() + 1 if len(items) else 0)),
            timestamps=None if timestamps is None else np.require(timestamps, dtype=np.int64, requirements="W"),
            item_features=None if item_features is None else np.asarray(item_features, np.float32),
            feature_names=tuple(feature_names),
            name=name,
        )


def encode(
    raw_users: np.ndarray, raw_items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Map raw ids to dense codes; returns (user codes, item codes, user ids, item ids)."""
    user_ids, users = np.unique(raw_users, return_inverse=True)
    item_ids, items = np.unique(raw_items, return_inverse=True)
    return users.astype(np.int64), items.astype(np.int64), user_ids, item_ids

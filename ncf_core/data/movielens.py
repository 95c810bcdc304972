"""MovieLens raw folders: 100K (``u.data``), 1M (``ratings.dat``), 20M/25M (``ratings.csv``).

Genres become optional item side features where the folder has the movie table.
Target: rating / 5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ncf_core.data._io import numeric, read_table, require_file
from ncf_core.data.interactions import Interactions, encode
from ncf_core.errors import DataError
from ncf_core.tasks import task_of

MAX_RATING = 5.0
COLUMNS = ["user", "item", "rating", "timestamp"]


def _ratings(folder: Path) -> tuple[Path, pd.DataFrame]:
    if (folder / "u.data").is_file():
        path = folder / "u.data"
        return path, read_table(path, COLUMNS, sep="\t", header=None, names=COLUMNS)
    if (folder / "ratings.dat").is_file():
        path = folder / "ratings.dat"
        return path, read_table(path, COLUMNS, sep="::", engine="python", header=None, names=COLUMNS)
    if (folder / "ratings.csv").is_file():
        path = folder / "ratings.csv"
        frame = read_table(path, ["userId", "movieId", "rating", "timestamp"])
        return path, frame.set_axis(COLUMNS, axis=1)
    raise DataError(folder, "no MovieLens ratings file (u.data, ratings.dat or ratings.csv)")


def _genres(folder: Path) -> tuple[pd.Index, np.ndarray, tuple[str, ...]] | None:
    if (folder / "u.item").is_file():
        path = folder / "u.item"
        frame = pd.read_csv(path, sep="|", header=None, encoding="latin-1")
        if frame.shape[1] != 24:
            raise DataError(path, f"expected 24 '|'-separated columns, found {frame.shape[1]}")
        names = tuple(f"genre_{i}" for i in range(19))
        genre_file = folder / "u.genre"
        if genre_file.is_file():
            g = pd.read_csv(genre_file, sep="|", header=None, encoding="latin-1").dropna()
            names = tuple(f"genre_{n}" for n in g[0])
        return pd.Index(frame[0].to_numpy()), frame.iloc[:, 5:].to_numpy(np.float32), names
    for name, sep in (("movies.dat", "::"), ("movies.csv", ",")):
        path = folder / name
        if path.is_file():
            if sep == "::":
                frame = pd.read_csv(path, sep=sep, engine="python", header=None, encoding="latin-1",
                                    names=["movieId", "title", "genres"])
            else:
                frame = read_table(path, ["movieId", "genres"])
            hot = frame["genres"].astype(str).str.get_dummies(sep="|").astype(np.float32)
            hot = hot.drop(columns=["(no genres listed)"], errors="ignore")
            names = tuple(f"genre_{c}" for c in hot.columns)
            return pd.Index(frame["movieId"].to_numpy()), hot.to_numpy(), names
    return None


def load(folder: Path, *, task: str = "ranking", features: bool = False, name: str = "") -> Interactions:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "data folder not found")
    path, frame = _ratings(folder)
    users_raw = numeric(path, frame, "user", np.int64)
    items_raw = numeric(path, frame, "item", np.int64)
    rating = numeric(path, frame, "rating")
    ts = numeric(path, frame, "timestamp", np.int64)
    if ((rating < 0) | (rating > MAX_RATING)).any():
        raise DataError(path, "ratings outside 0-5")
    users, items, _, item_ids = encode(users_raw, items_raw)
    feats, names = None, ()
    if features:
        genres = _genres(folder)
        if genres is None:
            require_file(folder / "u.item")
        ids, matrix, names = genres
        pos = ids.get_indexer(item_ids)
        if (pos < 0).any():
            raise DataError(path, f"{int((pos < 0).sum())} rated items missing from the movie table")
        feats = matrix[pos]
    target = task_of(task).targets(rating, MAX_RATING)
    return Interactions.from_codes(
        users, items, target, timestamps=ts, item_features=feats, feature_names=names,
        name=name or folder.name,
    )

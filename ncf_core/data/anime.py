"""The Kaggle "Anime Recommendations Database": ``anime.csv`` + ``rating.csv``.

Rating task: ratings 1-10 scaled to rating/10 (the seed write-up's target); -1 ("watched, not
rated") is dropped. Ranking task: every row, -1 included, is an implicit positive.
Item side features: type (one-hot), log1p(episodes), genres (multi-hot). Anime lacking any of
them are dropped only when features are asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ncf_core.data._io import numeric, read_table
from ncf_core.data.interactions import Interactions, encode
from ncf_core.errors import DataError
from ncf_core.tasks import task_of

FILES = ("anime.csv", "rating.csv")
MAX_RATING = 10.0


def item_features(anime: pd.DataFrame) -> tuple[pd.Index, np.ndarray, tuple[str, ...]]:
    """Feature rows for the anime that have type, genre and a known episode count."""
    episodes = pd.to_numeric(anime["episodes"], errors="coerce")
    ok = anime["type"].notna() & anime["genre"].notna() & episodes.notna()
    anime = anime[ok]
    types = pd.get_dummies(anime["type"].astype(str).str.strip(), prefix="type", dtype=np.float32)
    genres = (
        anime["genre"].astype(str).str.split(",").apply(lambda gs: [g.strip() for g in gs if g.strip()])
    )
    genre_hot = genres.explode().pipe(pd.get_dummies, prefix="genre", dtype=np.float32)
    genre_hot = genre_hot.groupby(level=0).max()
    log_eps = np.log1p(episodes[ok].to_numpy(np.float32))
    log_eps = (log_eps / max(float(log_eps.max()), 1.0)).reshape(-1, 1)
    matrix = np.hstack([types.to_numpy(), log_eps, genre_hot.loc[anime.index].to_numpy()])
    names = (*types.columns, "log_episodes", *genre_hot.columns)
    return pd.Index(anime["anime_id"].to_numpy()), matrix.astype(np.float32), tuple(names)


def load(
    folder: Path,
    *,
    task: str = "rating",
    max_rows: int | None = None,
    features: bool = True,
) -> Interactions:
    """``max_rows`` reads the first rows of ``rating.csv`` (the seed protocol uses 100,000)."""
    folder = Path(folder)
    rating_path = folder / "rating.csv"
    ratings = read_table(rating_path, ["user_id", "anime_id", "rating"], nrows=max_rows)
    users_raw = numeric(rating_path, ratings, "user_id", np.int64)
    items_raw = numeric(rating_path, ratings, "anime_id", np.int64)
    rating = numeric(rating_path, ratings, "rating")
    bad = (rating != -1) & ((rating < 1) | (rating > MAX_RATING))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(rating_path, f"rating {rating[row]:g} at data row {row + 1} is not -1 or 1-10")
    keep = task_of(task).keeps(rating, unrated=-1)

    feat_ids = matrix = None
    names: tuple[str, ...] = ()
    if features:
        anime_path = folder / "anime.csv"
        anime = read_table(anime_path, ["anime_id", "genre", "type", "episodes"])
        feat_ids, matrix, names = item_features(anime)
        keep &= np.isin(items_raw, feat_ids.to_numpy())
    if not keep.any():
        raise DataError(rating_path, "no usable ratings left after filtering")

    users, items, _, item_ids = encode(users_raw[keep], items_raw[keep])
    target = task_of(task).targets(rating[keep], MAX_RATING)
    feats = None if matrix is None else matrix[feat_ids.get_indexer(item_ids)]
    return Interactions.from_codes(
        users, items, target, item_features=feats, feature_names=names, name="anime"
    )

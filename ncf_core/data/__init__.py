"""Data sets: one module per source, one registry line each.

``load(name_or_path, data_dir, task)`` returns ``Interactions`` (to be split by seed) or, for
the NCF paper's files, a ``Split`` whose test set and negatives are given.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ncf_core.data import anime, movielens, ncf_files, synthetic
from ncf_core.data.interactions import Interactions
from ncf_core.data.splits import N_EVAL_NEGATIVES, Split, add_validation, make_split
from ncf_core.errors import DataError


@dataclass(frozen=True)
class DatasetSpec:
    """``folder`` under the data directory; ``marker`` is a file proving the set is there."""

    name: str
    folder: str | None
    marker: str | None
    loader: Callable[..., Interactions]
    task: str  # the task its paper protocol uses
    published: bool = False  # a published split, read as its reference code reads it (``strict`` refuses quirks)


DATASETS: dict[str, DatasetSpec] = {
    "anime": DatasetSpec("anime", "anime", "rating.csv", anime.load, "rating"),
    "ml-100k": DatasetSpec("ml-100k", "ml-100k", "u.data", partial(movielens.load, name="ml-100k"),
                           "ranking"),
    "ml-1m": DatasetSpec("ml-1m", "ml-1m", "ratings.dat", partial(movielens.load, name="ml-1m"),
                         "ranking"),
    "ml-20m": DatasetSpec("ml-20m", "ml-20m", "ratings.csv", partial(movielens.load, name="ml-20m"),
                          "ranking"),
    "ml-25m": DatasetSpec("ml-25m", "ml-25m", "ratings.csv", partial(movielens.load, name="ml-25m"),
                          "ranking"),
    "ncf-ml-1m": DatasetSpec("ncf-ml-1m", "ncf", "ml-1m.train.rating",
                             partial(ncf_files.load_named, stem="ml-1m"), "ranking", published=True),
    "ncf-pinterest-20": DatasetSpec("ncf-pinterest-20", "ncf", "pinterest-20.train.rating",
                                    partial(ncf_files.load_named, stem="pinterest-20"), "ranking", published=True),
    "synthetic": DatasetSpec("synthetic", None, None, synthetic.generate, "rating"),
}


def available(name: str, data_dir: str | Path | None) -> bool:
    spec = DATASETS[name]
    if spec.folder is None:
        return True
    return data_dir is not None and (Path(data_dir) / spec.folder / spec.marker).is_file()


def unknown_source(source: str | Path) -> DataError:
    """The one-line error for a name that is neither registered nor a path: the names, and the
    closest one where a typo is likely (``ml100k``)."""
    near = difflib.get_close_matches(str(source), list(DATASETS), n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return DataError(source, f"neither a registered data set nor an existing folder or NCF prefix ({hint}"
                             f"registered: {', '.join(DATASETS)})")


def resolve_path(source: str | Path) -> tuple[str, Path] | None:
    """A path given instead of a name: ('ncf', prefix) or (registered name, folder)."""
    path = Path(source)
    if Path(str(path) + ".train.rating").is_file():
        return "ncf", path
    if path.is_dir():
        for spec in DATASETS.values():
            if spec.marker and (path / spec.marker).is_file():
                return spec.name, path
        raise DataError(path, "folder holds no known data set's files")
    return None


def load(
    source: str | Path,
    *,
    data_dir: str | Path | None = None,
    task: str | None = None,
    strict: bool = False,
    **options: object,
) -> Interactions | Split:
    """Load a registered set (by name, under ``data_dir``) or a path (folder or NCF prefix).

    ``strict``: a published split's quirks (``Split.anomalies``) are errors instead of being read
    as its reference code reads them.
    """
    if str(source) in DATASETS:
        spec = DATASETS[str(source)]
        if spec.published:
            options["strict"] = strict
        if spec.folder is None:
            return spec.loader(task=task or spec.task, **options)
        if data_dir is None:
            raise DataError(source, "needs a data directory (--data-dir)")
        folder = Path(data_dir) / spec.folder
        if not folder.is_dir():
            raise DataError(folder, f"data set {spec.name!r} not found")
        return spec.loader(folder, task=task or spec.task, **options)
    resolved = resolve_path(source)
    if resolved is None:
        raise unknown_source(source)
    kind, path = resolved
    if kind == "ncf":
        return ncf_files.load(path, strict=strict)
    spec = DATASETS[kind]
    if spec.published:
        options["strict"] = strict
    return spec.loader(path, task=task or spec.task, **options)


def split_for_seed(data: Interactions | Split, task: str, seed: int, n_eval_negatives: int = N_EVAL_NEGATIVES) -> Split:
    """Same seed, same split and negatives, for every variant (paired comparisons)."""
    if isinstance(data, Split):
        return add_validation(data, seed, n_eval_negatives)
    return make_split(data, task, seed, n_eval_negatives=n_eval_negatives)


__all__ = ["DATASETS", "N_EVAL_NEGATIVES", "DataError", "DatasetSpec", "Interactions", "Split", "available", "load",
           "make_split", "split_for_seed"]

"""Suites and data-set protocols as plain data. Add a suite by adding one ``Suite(...)`` to ``SUITES``."""

from __future__ import annotations

from dataclasses import dataclass

from bench.variants import ALL_VARIANTS
from ncf_core import ModelConfig, TrainConfig
from ncf_core.tasks import N_EVAL_NEGATIVES


@dataclass(frozen=True)
class DataSpec:
    """A data set under one protocol. ``source`` is a registered name or a path."""

    source: str
    task: str
    model: ModelConfig
    train: TrainConfig
    options: tuple[tuple[str, object], ...] = ()  # loader keyword arguments
    n_eval_negatives: int = N_EVAL_NEGATIVES
    refit: bool = False  # after selecting epoch E on validation, retrain on train + validation for E epochs
    name: str | None = None  # the label, where the last path component would be ambiguous
    stands_in_for: str | None = None  # the suite's data set this synthetic one replaces
    anomalies: tuple[str, ...] = ()  # what its published files hold that a clean split would not, and what was done
    search: str = "ncf"  # the tuning search space (SEARCH_SPACES)
    epochs_fixed: bool = False  # the epoch count was set by --epochs: tuned or preset settings do not change it
    fingerprint: str = ""  # a digest of the data as loaded (set when loaded): other rows under one label are refused

    @property
    def label(self) -> str:
        """The data set's identity in trial keys, tables and file names: unique within a run."""
        return self.name or self.source.rstrip("/").split("/")[-1]


# The seed write-up's protocol on anime: first 100k rows, -1 dropped, rating/10, MSE, 80/20, 10 epochs.
ANIME_SEED = DataSpec(
    "anime", "rating", ModelConfig(use_item_features=True),
    TrainConfig(task="rating", epochs=10, batch_size=256, lr=1e-3),
    options=(("max_rows", 100_000),),
)


def ncf_ranking(source: str, factors: int = 8, epochs: int = 20, batch_size: int = 256, refit: bool = False,
                search: str = "ncf") -> DataSpec:
    """The NCF paper's ranking protocol: leave-one-out, 4 negatives, 99 test negatives, @10.
    ``refit``: the paper trains on all but the test item, so after the epoch count is chosen on
    the validation item the model is retrained with it given back."""
    return DataSpec(
        source, "ranking", ModelConfig(n_factors=factors),  # the paper tower (4f-2f-f)
        TrainConfig(task="ranking", epochs=epochs, batch_size=batch_size, lr=1e-3, n_negatives=4, k=10),
        refit=refit, search=search,
    )


def synthetic(task: str, n_users: int = 300, n_items: int = 150, epochs: int = 4) -> DataSpec:
    return DataSpec(
        "synthetic", task, ModelConfig(use_item_features=True),
        TrainConfig(task=task, epochs=epochs, batch_size=256, lr=3e-3),
        options=(("n_users", n_users), ("n_items", n_items), ("per_user", 25)),
        n_eval_negatives=N_EVAL_NEGATIVES if n_items > 120 else n_items // 2,
    )


def default_spec(kind: str) -> DataSpec:
    """The protocol a kind of data follows when a suite names no other: its paper's."""
    if kind == "anime":
        return ANIME_SEED
    if kind == "synthetic":
        return synthetic("rating")
    return ncf_ranking(kind)  # MovieLens folders and the NCF paper's files ("ncf")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    datasets: tuple[DataSpec, ...]
    seeds: int
    variants: tuple[str, ...] = ALL_VARIANTS
    devices: tuple[str, ...] = ("auto",)  # "auto" = every device present
    baselines: bool = True
    tune: int = 0  # Optuna trials per (data set, variant) before the seeded trials; 0 = paper defaults


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("smoke", "synthetic data, both tasks, 3 seeds, CPU: under a minute; CI runs it",
              (synthetic("rating"), synthetic("ranking")), seeds=3, devices=("cpu",)),
        Suite("quick", "real anime (seed protocol) and ml-100k (NCF protocol), 5 seeds, every device",
              (ANIME_SEED, ncf_ranking("ml-100k", factors=8, epochs=10)), seeds=5),
        Suite("full", "anime, ml-100k, ml-1m, ml-20m and the NCF paper's files, those found; NCF paper settings "
                      "(64 factors), 10 seeds, every device; "
                      "tuning searches MF where Rendle et al. 2020 trained it",
              (ANIME_SEED, *(ncf_ranking(name, factors=64, refit=True, search="rendle") for name in
                             ("ml-100k", "ml-1m", "ncf-ml-1m", "ncf-pinterest-20")),
               ncf_ranking("ml-20m", factors=64, batch_size=1024, refit=True, search="rendle")), seeds=10),
    )
}

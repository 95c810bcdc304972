"""Suites and variants as plain data. Add a suite by adding one ``Suite(...)`` to ``SUITES``."""

from __future__ import annotations

from dataclasses import dataclass

from ncf_core import ModelConfig, TrainConfig


@dataclass(frozen=True)
class Variant:
    """``pretrained`` NeuMF starts from the GMF and MLP of the same seed, fine-tuned with ``optimizer``."""

    name: str
    model: str
    pretrained: bool = False
    optimizer: str = "adam"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("mf", "mf"),
        Variant("gmf", "gmf"),
        Variant("mlp", "mlp"),
        Variant("neumf", "neumf"),
        Variant("neumf-pre-adam", "neumf", pretrained=True, optimizer="adam"),
        Variant("neumf-pre-sgd", "neumf", pretrained=True, optimizer="sgd"),
    )
}
ALL_VARIANTS = tuple(VARIANTS)
PRETRAIN_BASES = ("gmf", "mlp")  # what a pretrained NeuMF starts from


def chain_rank(name: str) -> int:
    """Scheduling priority: the pretraining bases, then the pretrained variants that wait for them
    (the long chains), then everything nothing waits for."""
    chain = PRETRAIN_BASES + tuple(v for v in VARIANTS if VARIANTS[v].pretrained)
    return chain.index(name) if name in chain else len(chain)


SEARCH_SPACES = ("ncf", "rendle")  # DataSpec.search: the space a protocol's studies search


def search_space(trial, variant: Variant, task: str, space: str = "ncf") -> dict[str, dict[str, object]]:
    """Optuna search space of a variant: ``trial`` is an ``optuna.Trial`` (duck-typed here).

    A pretrained NeuMF keeps the shapes of the GMF and MLP it starts from; it tunes alpha and
    the fine-tuning step instead. ``space="rendle"`` widens MF's space to the region Rendle et al.
    2020 trained it in (their MF's settings: mf_space).
    """
    if space == "rendle" and variant.model == "mf" and task == "ranking":
        return mf_space(trial)
    train: dict[str, object] = {
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [128, 256, 512, 1024]),
        "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-3, log=True),
    }
    model: dict[str, object] = {}
    if task == "ranking":
        train["n_negatives"] = trial.suggest_int("n_negatives", 1, 8)
    if variant.optimizer == "sgd":
        train["momentum"] = trial.suggest_float("momentum", 0.0, 0.99)
    if variant.pretrained:
        model["alpha"] = trial.suggest_float("alpha", 0.0, 1.0)
        return {"model": model, "train": train}
    if variant.model in ("mf", "gmf", "neumf"):
        model["n_factors"] = trial.suggest_categorical("n_factors", [8, 16, 32, 64])
    if variant.model in ("mlp", "neumf"):
        depth = trial.suggest_int("mlp_depth", 1, 3)
        width = trial.suggest_categorical("mlp_width", [32, 64, 128, 256])
        model["mlp_layers"] = tuple(width // 2**k for k in range(depth + 1))
        model["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
    return {"model": model, "train": train}


RENDLE_EPOCHS, RENDLE_PATIENCE = 256, 16


def mf_space(trial) -> dict[str, dict[str, object]]:
    """MF where Rendle et al. 2020 found it strong on the NCF paper's files: embeddings up to 192,
    1-10 negatives, per-example L2 on the rows an example touches, SGD (per-example steps, as their
    mf_simple.py) as well as Adam, the initialisation scale, and up to 256 epochs with validation
    early stopping so that a poor setting stops early."""
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
    train: dict[str, object] = {
        "optimizer": optimizer,
        "reduction": "sum" if optimizer == "sgd" else "mean",
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [128, 256, 512, 1024]),
        "n_negatives": trial.suggest_int("n_negatives", 1, 10),
        "l2": trial.suggest_float("l2", 1e-5, 1e-1, log=True),
        "epochs": RENDLE_EPOCHS, "patience": RENDLE_PATIENCE,
    }
    model = {"n_factors": trial.suggest_categorical("n_factors", [8, 16, 32, 64, 128, 192]),
             "init_std": trial.suggest_float("init_std", 3e-3, 0.3, log=True)}
    return {"model": model, "train": train}


@dataclass(frozen=True)
class DataSpec:
    """A data set under one protocol. ``source`` is a registered name or a path."""

    source: str
    task: str
    model: ModelConfig
    train: TrainConfig
    options: tuple[tuple[str, object], ...] = ()  # loader keyword arguments
    n_eval_negatives: int = 99
    fallback: str | None = None  # registered set used (and said so) when ``source`` is missing
    refit: bool = False  # after selecting epoch E on validation, retrain on train + validation for E epochs
    name: str | None = None  # the label, where the last path component would be ambiguous
    stands_in_for: str | None = None  # the suite's data set this synthetic one replaces
    anomalies: tuple[str, ...] = ()  # what its published files hold that a clean split would not, and what was done
    search: str = "ncf"  # the tuning search space (SEARCH_SPACES)
    epochs_fixed: bool = False  # the epoch count was set by --epochs: tuned or preset settings do not change it

    @property
    def label(self) -> str:
        """The data set's identity in trial keys, tables and file names: unique within a run."""
        return self.name or self.source.rstrip("/").split("/")[-1]


# The seed write-up's protocol on anime: first 100k rows, -1 dropped, rating/10, MSE, 80/20, 10 epochs.
ANIME_SEED = DataSpec(
    "anime", "rating", ModelConfig(use_item_features=True),
    TrainConfig(task="rating", epochs=10, batch_size=256, lr=1e-3),
    options=(("max_rows", 100_000),), fallback="synthetic",
)


def ncf_ranking(source: str, factors: int = 8, epochs: int = 20, fallback: str | None = None,
                batch_size: int = 256, refit: bool = False, search: str = "ncf") -> DataSpec:
    """The NCF paper's ranking protocol: leave-one-out, 4 negatives, 99 test negatives, @10.
    ``refit``: the paper trains on all but the test item, so after the epoch count is chosen on
    the validation item the model is retrained with it given back."""
    return DataSpec(
        source, "ranking", ModelConfig(n_factors=factors),  # the paper tower (4f-2f-f)
        TrainConfig(task="ranking", epochs=epochs, batch_size=batch_size, lr=1e-3, n_negatives=4, k=10),
        fallback=fallback, refit=refit, search=search,
    )


def synthetic(task: str, n_users: int = 300, n_items: int = 150, epochs: int = 4) -> DataSpec:
    return DataSpec(
        "synthetic", task, ModelConfig(use_item_features=True),
        TrainConfig(task=task, epochs=epochs, batch_size=256, lr=3e-3),
        options=(("n_users", n_users), ("n_items", n_items), ("per_user", 25)),
        n_eval_negatives=99 if n_items > 120 else n_items // 2,
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
              (ANIME_SEED, ncf_ranking("ml-100k", factors=8, epochs=10, fallback="synthetic")), seeds=5),
        Suite("full", "every data set found, NCF paper settings (64 factors), 10 seeds, every device; "
                      "tuning searches MF where Rendle et al. 2020 trained it",
              (ANIME_SEED, *(ncf_ranking(name, factors=64, refit=True, search="rendle") for name in
                             ("ml-100k", "ml-1m", "ncf-ml-1m", "ncf-pinterest-20")),
               ncf_ranking("ml-20m", factors=64, batch_size=1024, refit=True, search="rendle")), seeds=10),
    )
}

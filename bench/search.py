"""The tuning protocol, as plain data: search spaces, which settings a stack of trials shares, the
seeds and the pruners by name. Optuna is duck-typed here (``trial.suggest_*``), so importing this
module costs nothing; ``bench.compute.study`` runs the studies.
"""

from __future__ import annotations

from bench.variants import VARIANTS, Variant
from ncf_core.tasks import task_of

TUNE_SEED = 1_000_003  # the tuning split's seed: none of a run's evaluation seeds (0..N-1)
SAMPLER_SEED = 0  # TPE's seed; trial n's draws come from (SAMPLER_SEED, n), so a resumed study draws alike
TPE_STARTUP = 10  # TPE's start-up trials (Optuna's default): drawn at random while fewer have finished
HEARTBEAT_S, GRACE_S = 10, 30  # shared studies (bench tune): a worker's heartbeat, and when a silent one is dead
STARTUP_TRIALS, WARMUP_EPOCHS = 3, 1  # the median pruner's: complete trials before it prunes; epochs spared
HALVING_MIN_EPOCHS, HALVING_FACTOR = 1, 3  # successive halving: first rung after 1 epoch, a third goes on
PRUNERS = {
    "median": f"median ({STARTUP_TRIALS} start-up trials, {WARMUP_EPOCHS} warm-up epoch{'s' * (WARMUP_EPOCHS > 1)})",
    "halving": f"successive halving (rungs at {HALVING_MIN_EPOCHS} x {HALVING_FACTOR}^r epochs, "
               f"1/{HALVING_FACTOR} promoted)",
}
DEFAULT_PRUNER = "halving"  # the better best value per CPU-minute on the quick suite (README)
# Settings that shape how a trial trains (its batches, negatives, layers and optimizer): the
# structures a study tried, counted in the summary.
STRUCTURAL = ("batch_size", "n_negatives", "mlp_depth", "optimizer")
# Every trial draws all of its settings from the sampler, as one trial at a time does (a stack is K
# parallel workers to TPE). Of those settings, the trials of one stack must share only a depth
# (padding widens layers, it cannot add one) and an optimizer kind: trials drawn together that differ
# in them train as stacks of their own (bench.compute.pruning.by_structure). Batch size and
# negatives are each member's own (ncf_core.engine.train.MEMBER_STREAMS), and so are the learning
# settings (MEMBER_SETTINGS), dropout, alpha, init_std and the widths (ncf_core.engine.stacked).
SHARED_IN_STACK = ("mlp_depth", "optimizer")

SEARCH_SPACES = ("ncf", "rendle")  # DataSpec.search: the space a protocol's studies search


def search_space(trial, variant: Variant, task: str, space: str = "ncf") -> dict[str, dict[str, object]]:
    """Optuna search space of a variant: ``trial`` is an ``optuna.Trial`` (duck-typed here).

    A pretrained NeuMF keeps the shapes of the GMF and MLP it starts from; it tunes alpha and
    the fine-tuning step instead. ``space="rendle"`` widens MF's space to the region Rendle et al.
    2020 trained it in (their MF's settings: mf_space).
    """
    implicit = task_of(task).implicit
    if variant.reference:
        return {"model": REFERENCE_SPACES[variant.model](trial), "train": {}}
    if space == "rendle" and variant.model == "mf" and implicit:
        return mf_space(trial)
    train: dict[str, object] = {
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [128, 256, 512, 1024]),
        "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-3, log=True),
    }
    model: dict[str, object] = {}
    if implicit:
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

# The reference baselines' spaces: Dacrema et al.'s (RecSys 2019, TOIS 2021) ranges, widened where
# Rendle et al. (2022) tuned iALS outside them (192 factors, reg 0.007). A reference's settings are
# its "model" part of a params entry (ncf_core.baselines.REFERENCES[name].config).
REFERENCE_SPACES = {
    "ease": lambda t: {"l2": t.suggest_float("l2", 1.0, 1e7, log=True)},
    "ials": lambda t: {"factors": t.suggest_int("factors", 8, 256, log=True),
                       "regularization": t.suggest_float("regularization", 1e-5, 1e-1, log=True),
                       "alpha": t.suggest_float("alpha", 1e-2, 50.0, log=True),
                       "epochs": t.suggest_int("epochs", 1, 50)},
    "itemknn": lambda t: {"top_k": t.suggest_int("top_k", 5, 1000),
                          "shrink": float(t.suggest_int("shrink", 0, 1000))},
    "rp3beta": lambda t: {"alpha": t.suggest_float("alpha", 0.0, 2.0),
                          "beta": t.suggest_float("beta", 0.0, 2.0),
                          "top_k": t.suggest_int("top_k", 5, 1000)},
}


class _FirstChoice:
    """A stand-in for an Optuna trial that answers every question with its lowest value."""

    def suggest_float(self, name: str, low: float, high: float, **kw: object) -> float:
        return low

    def suggest_int(self, name: str, low: int, high: int, **kw: object) -> int:
        return low

    def suggest_categorical(self, name: str, choices: list) -> object:
        return choices[0]


class _RandomChoice:
    """A stand-in trial that draws every setting at random, as TPE's start-up trials do: uniform,
    or log-uniform where the space says ``log``."""

    def __init__(self, rng) -> None:  # noqa: ANN001 - a numpy Generator
        self.rng = rng

    def suggest_float(self, name: str, low: float, high: float, log: bool = False, **kw: object) -> float:
        if log:
            return float(low * (high / low) ** self.rng.random())
        return float(low + (high - low) * self.rng.random())

    def suggest_int(self, name: str, low: int, high: int, **kw: object) -> int:
        return int(self.rng.integers(low, high + 1))

    def suggest_categorical(self, name: str, choices: list) -> object:
        return choices[int(self.rng.integers(len(choices)))]


def space_draws(variant: Variant, task: str, space: str = "ncf", n: int = 3, seed: int = 0) -> list[dict]:
    """``n`` settings drawn at random from a variant's space: what a run's plan times a study (and
    its tuned winner) at, since the defaults can lie far from what the search will train (Rendle's
    MF goes to 192 factors and 10 negatives)."""
    import numpy as np

    rng = np.random.default_rng([seed, n])
    draws = [search_space(_RandomChoice(rng), variant, task, space) for _ in range(n)]
    if variant.pretrained:  # its shapes are those of its GMF and MLP, drawn from their spaces
        gmf, mlp = (space_draws(VARIANTS[name], task, space, n, seed) for name in ("gmf", "mlp"))
        for draw, g, m in zip(draws, gmf, mlp):
            draw["model"].update(n_factors=g["model"]["n_factors"], mlp_layers=m["model"]["mlp_layers"])
    return draws


def pinned_training(variant: Variant, task: str, space: str = "ncf") -> dict[str, object]:
    """The epochs and patience a space fixes for every trial (Rendle's MF: 256 epochs, patience 16):
    what a run's plan must assume for a study's trials and for the seeds trained with its winner."""
    if variant.reference:
        return {}
    train = search_space(_FirstChoice(), variant, task, space)["train"]
    return {k: train[k] for k in ("epochs", "patience") if k in train}


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

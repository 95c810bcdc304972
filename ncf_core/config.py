"""Small frozen configs: everything a trial needs to be rebuilt lies in these two."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields, replace
from typing import Any

from ncf_core.tasks import TASKS

OPTIMIZERS = ("adam", "sgd")
REDUCTIONS = ("mean", "sum")


@dataclass(frozen=True)
class ModelConfig:
    """Shapes follow He et al. 2017: 8 predictive factors, and unless given the MLP tower the paper
    describes for them (``paper_tower``).

    ``mlp_layers[0]`` is the width of the concatenated user+item embedding (each half of it);
    the last entry is the MLP's predictive-factor count.
    """

    n_factors: int = 8
    mlp_layers: tuple[int, ...] | None = None  # None: paper_tower(n_factors)
    dropout: float = 0.0
    use_item_features: bool = False
    alpha: float = 0.5  # NeuMF pretraining: weight of the GMF prediction layer
    init_std: float = 0.01  # embeddings start N(0, init_std): 0.01 as the NCF code, 0.1 as Rendle et al. 2020

    def __post_init__(self) -> None:
        if not _whole(self.n_factors):
            raise ValueError(f"n_factors must be a whole number >= 1, not {self.n_factors!r}")
        if self.mlp_layers is None:
            object.__setattr__(self, "mlp_layers", paper_tower(self.n_factors))
        if len(self.mlp_layers) < 2 or not all(_whole(x) for x in self.mlp_layers) or self.mlp_layers[0] % 2:
            raise ValueError("mlp_layers needs >= 2 whole numbers >= 1 and an even first entry")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must lie in [0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must lie in [0, 1)")
        if not 0.0 < self.init_std < float("inf"):
            raise ValueError("init_std must be a positive number")
        object.__setattr__(self, "mlp_layers", tuple(int(x) for x in self.mlp_layers))


@dataclass(frozen=True)
class TrainConfig:
    """NCF defaults: Adam, lr 1e-3, batch 256, 4 negatives per positive, HR/NDCG@10."""

    task: str = "rating"
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0  # the optimizer's L2 on every parameter, every step (torch's weight_decay)
    l2: float = 0.0  # per-example L2 on the rows an example looks up (Rendle et al. 2020's regularisation)
    reduction: str = "mean"  # "sum": each example's gradient at the full step, as per-example SGD (Rendle et al.)
    n_negatives: int = 4
    k: int = 10
    patience: int | None = None  # early stopping on the validation metric; None = all epochs
    sparse: bool = False  # embedding gradients of the batch's rows only, with lazy Adam (ncf_core.engine.optim)
    compile: bool = False  # torch.compile the training forward/backward; on CUDA with CUDA graphs
    amp: bool = False  # bf16 autocast in the training forward (meant for CUDA)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {tuple(TASKS)}, not {self.task!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.compile and self.sparse:
            raise ValueError("compile needs dense embedding gradients (sparse=False)")
        if self.sparse and self.optimizer == "sgd" and self.weight_decay:
            raise ValueError("SGD with sparse embedding gradients takes no weight_decay")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, not {self.reduction!r}")
        for name in ("epochs", "batch_size", "n_negatives", "k"):
            if not _whole(getattr(self, name)):
                raise ValueError(f"{name} must be a whole number >= 1, not {getattr(self, name)!r}")
        if self.patience is not None and not _whole(self.patience):
            raise ValueError(f"patience must be a whole number >= 1 or None, not {self.patience!r}")
        if not 0.0 < self.lr < float("inf"):
            raise ValueError(f"lr must be a positive number, not {self.lr!r}")
        for name in ("weight_decay", "l2", "momentum"):
            if not 0.0 <= getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a number >= 0, not {getattr(self, name)!r}")
        if self.momentum >= 1.0:
            raise ValueError(f"momentum must lie in [0, 1), not {self.momentum!r}")


def paper_tower(factors: int) -> tuple[int, ...]:
    """He et al. 2017, section 4.1: with f predictive factors the MLP's layers are 4f -> 2f -> f
    (each embedding 2f wide), e.g. 32 -> 16 -> 8 for 8 factors."""
    return (4 * factors, 2 * factors, factors)


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


# What a field's declared type accepts from a settings file (JSON: true is not 1, "false" is not false).
_ACCEPTS = {
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "int": ("a whole number", lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)),
    "float": ("a number", lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
}


def with_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """``dataclasses.replace`` that rejects unknown fields and values of the wrong type, so that a
    typo or ``"sparse": "false"`` fails when the file is read, not a trial at training time."""
    declared = {f.name: str(f.type) for f in fields(cfg)}
    unknown = set(overrides) - set(declared)
    if unknown:
        raise ValueError(f"unknown {type(cfg).__name__} fields: {sorted(unknown)}")
    for name, value in overrides.items():
        kind, *rest = declared[name].split(" | ")
        if value is None and "None" in rest or kind not in _ACCEPTS:
            continue
        what, accepts = _ACCEPTS[kind]
        if not accepts(value):
            raise ValueError(f"{name} must be {what}, not {value!r}")
    return replace(cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})


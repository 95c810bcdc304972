"""Model registry. Every model returns logits.

A new model is its own file and one line in ``MODELS``; to benchmark it, one ``Variant`` line in
``bench.variants`` (and, to tune its own shape settings, their lines in ``bench.search``). A model
stays stackable (``ncf_core.engine.stacked``) by using only element-wise ops and ``dim=-1`` in ``forward``.
"""

from __future__ import annotations

import torch
from torch import nn

from ncf_core.config import ModelConfig
from ncf_core.models.gmf import GMF
from ncf_core.models.mf import MF
from ncf_core.models.mlp import MLP
from ncf_core.models.neumf import NeuMF
from ncf_core.models.pretrain import neumf_from_pretrained

MODELS: dict[str, type[nn.Module]] = {"mf": MF, "gmf": GMF, "mlp": MLP, "neumf": NeuMF}


def build(name: str, cfg: ModelConfig, n_users: int, n_items: int,
          item_features: torch.Tensor | None = None, sparse: bool = False) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](n_users, n_items, cfg, item_features, sparse)


__all__ = ["GMF", "MF", "MLP", "MODELS", "NeuMF", "build", "neumf_from_pretrained"]

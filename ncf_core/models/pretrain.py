"""NeuMF initialised from trained GMF and MLP, as in He et al. 2017, section 3.4.1.

Embeddings, feature projections and tower layers are copied; the output layer is
[alpha * h_gmf, (1 - alpha) * h_mlp] with bias alpha * b_gmf + (1 - alpha) * b_mlp, so that before
fine-tuning NeuMF's logit is exactly alpha * GMF-logit + (1 - alpha) * MLP-logit.
"""

from __future__ import annotations

import torch

from ncf_core.config import ModelConfig
from ncf_core.models.gmf import GMF
from ncf_core.models.mlp import MLP
from ncf_core.models.neumf import NeuMF


@torch.no_grad()
def neumf_from_pretrained(gmf: GMF, mlp: MLP, cfg: ModelConfig, n_users: int, n_items: int,
                          item_features: torch.Tensor | None = None,
                          sparse: bool = False) -> NeuMF:
    model = NeuMF(n_users, n_items, cfg, item_features, sparse).to(gmf.out.weight.device)
    f = cfg.n_factors
    model.user.weight[:, :f] = gmf.user.weight
    model.user.weight[:, f:] = mlp.user.weight
    model.item.embedding.weight[:, :f] = gmf.item.embedding.weight
    model.item.embedding.weight[:, f:] = mlp.item.embedding.weight
    if model.item.project is not None:  # a branch trained without features contributes none
        for rows, branch in ((slice(None, f), gmf), (slice(f, None), mlp)):
            project = branch.item.project
            model.item.project.weight[rows] = 0.0 if project is None else project.weight
    model.tower.load_state_dict(mlp.tower.state_dict())
    a = cfg.alpha
    model.out.weight.copy_(torch.cat([a * gmf.out.weight, (1 - a) * mlp.out.weight], dim=1))
    model.out.bias.copy_(a * gmf.out.bias + (1 - a) * mlp.out.bias)
    return model

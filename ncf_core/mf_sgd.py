"""MF's SGD step written out: Rendle et al. 2020's MF, on a CPU, without autograd.

MF's gradient is a few lines: a logit's error times the other side's row. Through autograd a small
batch's step is some fifty kernels (sparse gradients built, coalesced, then added) for a few
thousand multiply-adds, and in Rendle's search space (256 epochs, batches down to 128) those steps
are most of a study. Here a step is the forward, the error, and one ``index_add_`` per table: the
update plain SGD makes from autograd's gradient, up to float rounding (``tests/test_mf_sgd.py``),
for one model or a stack of members with their own learning rates and ``l2``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ncf_core.config import TrainConfig
from ncf_core.models.mf import MF
from ncf_core.optim import MemberSGD, plain_sgd
from ncf_core.tasks import task_of

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def mf_sgd_step(model: nn.Module, optimizers: list[torch.optim.Optimizer], cfg: TrainConfig,
                l2: torch.Tensor | float) -> Step | None:
    """``step(users, items, targets)`` -> the batch's mean loss per member, having updated ``model``
    as ``optimizers`` would from autograd's gradient; None where that is not this step: another model
    or optimizer, item features, another objective, another device, amp or compile."""
    if not (isinstance(model, MF) and model.item.project is None and len(optimizers) == 1
            and isinstance(optimizers[0], (torch.optim.SGD, MemberSGD)) and plain_sgd(cfg)
            and task_of(cfg.task).objective == "bce" and not cfg.amp
            and model.user.weight.device.type == "cpu"):
        return None
    opt = optimizers[0]
    if isinstance(opt, MemberSGD):
        if any(opt.member_mom) or any(opt.member_wd):
            return None
        lrs = opt.member_lr
    else:
        group = opt.param_groups[0]
        if len(opt.param_groups) != 1 or group["momentum"] or group["weight_decay"] or group["nesterov"]:
            return None
        lrs = [group["lr"]]
    tables = (model.user, model.item.embedding, model.user_bias, model.item_bias)
    weights = [t.weight for t in tables]
    stacked = model.bias.dim() == 2  # a stack's parameters have the member axis first
    user_offset, item_offset = (getattr(t, "offset", None) for t in tables[:2])
    # per member (S, 1) where members differ, else one number: the learning rate, and l2
    rate = torch.tensor(lrs, dtype=model.bias.dtype).view(-1, 1) if len(lrs) > 1 else lrs[0]
    penalty = l2.view(-1, 1) if isinstance(l2, torch.Tensor) else float(l2)

    @torch.no_grad()
    def step(users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if stacked:  # a member's ids into its block of each table
            users, items = users + user_offset, items + item_offset
        p, q = weights[0][users], weights[1][items]
        bu, bi = weights[2][users].squeeze(-1), weights[3][items].squeeze(-1)
        logits = (p * q).sum(-1) + bu + bi + model.bias
        losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1)
        # d objective / d logit: the loss is a mean over the batch, times its rows for "sum"
        rows = users.shape[-1]
        scale = 1.0 if cfg.reduction == "sum" else 1.0 / rows
        err = (torch.sigmoid(logits) - targets).mul_(scale)
        decay = penalty * scale  # the lookup penalty's: l2 times each row, once per example
        grads = [err.unsqueeze(-1) * q, err.unsqueeze(-1) * p, err, err]
        if isinstance(decay, torch.Tensor) or decay:
            d = decay.unsqueeze(-1) if isinstance(decay, torch.Tensor) else decay
            grads = [grads[0] + p * d, grads[1] + q * d, err + bu * decay, err + bi * decay]
        bias_grad = err.sum(-1, keepdim=stacked) + model.bias * (penalty * rows * scale)
        for table, ids, grad in zip(weights, (users, items, users, items), grads):
            r = rate.unsqueeze(-1) if isinstance(rate, torch.Tensor) and grad.dim() == 3 else rate
            table.index_add_(0, ids.reshape(-1), (grad * r).reshape(-1, table.shape[1]), alpha=-1)
        model.bias.sub_(bias_grad * rate)
        return losses

    return step

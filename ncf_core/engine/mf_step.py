"""MF's training step written out: Rendle et al. 2020's MF, on a CPU, without autograd.

MF's gradient is a few lines: a logit's error times the other side's row. Through autograd a small
batch's step is some fifty kernels (the graph, embedding backward, sparse gradients coalesced) for a
few thousand multiply-adds, and in Rendle's search space (256 epochs, batches down to 128) those
steps are most of a study. Here a step is the forward, the error and the gradient rows. Plain SGD
then adds them to the tables (one ``index_add_`` each, the rows only); any other optimizer over
dense tables (Adam, SGD with momentum or weight decay) gets them as its ``.grad`` and steps as
usual. Either way the update is the one autograd's gradient gives, up to float rounding
(``tests/ncf_core/engine/test_mf_step.py``), for one model or a stack of members with their own settings.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ncf_core.config import TrainConfig
from ncf_core.engine.gradients import RowBuffers
from ncf_core.engine.optim import LazyAdam, MemberSGD
from ncf_core.models.base import members
from ncf_core.models.mf import MF
from ncf_core.tasks import task_of

Step = Callable[..., torch.Tensor]


def mf_step(model: nn.Module, optimizers: list[torch.optim.Optimizer], cfg: TrainConfig,
            l2: torch.Tensor | float) -> Step | None:
    """``step(users, items, targets, weights=None)`` -> the batch's mean loss per member, having updated ``model``
    as ``optimizers`` would from autograd's gradient; None where that is not this step: another
    model, item features, another objective, a device other than the CPU, amp, or sparse tables."""
    if not (isinstance(model, MF) and model.item.project is None and task_of(cfg.task).objective == "bce"
            and not cfg.amp and model.user.weight.device.type == "cpu"):
        return None
    tables = (model.user, model.item.embedding, model.user_bias, model.item_bias)
    lrs = _plain_sgd_rates(optimizers)
    if lrs is None and (any(t.sparse for t in tables) or any(isinstance(o, LazyAdam) for o in optimizers)):
        return None
    weights_ = [t.weight for t in tables]
    stacked = model.bias.dim() == 2  # a stack's parameters have the member axis first
    user_offset, item_offset = (getattr(t, "offset", None) for t in tables[:2])
    # per member (S, 1) where members differ, else one number: the learning rate, and l2
    rate = None if lrs is None else torch.tensor(lrs, dtype=model.bias.dtype).view(-1, 1) if len(lrs) > 1 else lrs[0]
    penalty = l2.view(-1, 1) if isinstance(l2, torch.Tensor) else float(l2)
    # dense gradients without a fresh zero table a step (a third of a 128-factor ML-1M Adam step)
    buffers = RowBuffers(weights_) if rate is None else None

    @torch.no_grad()
    def step(users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
             weights: torch.Tensor | None = None) -> torch.Tensor:
        bias, lr, l2_ = model.bias, rate, penalty
        if stacked:  # a member's ids into its block of each table; the first k members (Layout)
            k = len(users)
            users, items = users + user_offset[:k], items + item_offset[:k]
            bias, lr, l2_ = (members(t, users) if isinstance(t, torch.Tensor) else t for t in (bias, rate, penalty))
        shape, users, items = users.shape, users.reshape(-1), items.reshape(-1)  # index_select: ~3x [ids] on a CPU
        p, q, bu, bi = (w.index_select(0, ids).view(*shape, -1) for w, ids in zip(weights_, (users, items) * 2))
        bu, bi = bu.squeeze(-1), bi.squeeze(-1)
        logits = (p * q).sum(-1) + bu + bi + bias
        losses = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
        # d objective / d logit: the loss is a mean over the batch, times its rows for "sum"; with
        # ``weights`` (members with their own batches, padded) each row's share of its member's mean
        if weights is None:
            losses = losses.mean(-1)
            rows = shape[-1]
            scale = 1.0 if cfg.reduction == "sum" else 1.0 / rows
            penalised_rows = rows * scale  # how often the global bias is looked up, in the objective
        else:
            losses = (losses * weights).sum(-1)
            scale = (weights > 0).to(weights.dtype) if cfg.reduction == "sum" else weights
            penalised_rows = scale.sum(-1, keepdim=True)
        err = (torch.sigmoid(logits) - targets).mul_(scale)
        bias_grad = err.sum(-1, keepdim=stacked) + bias * (l2_ * penalised_rows)
        # plain SGD adds -lr x the gradient to the rows it looks up; other optimizers take the gradient
        e = err if lr is None else err * -lr
        decay = 0.0 if not isinstance(l2_, torch.Tensor) and not l2_ else \
            l2_ * scale * (1.0 if lr is None else -lr)  # the lookup penalty's: l2 x each row
        e3 = e.unsqueeze(-1)
        if isinstance(decay, torch.Tensor) or decay:
            d3 = decay.unsqueeze(-1) if isinstance(decay, torch.Tensor) else decay
            grads = [torch.addcmul(p * d3, q, e3), torch.addcmul(q * d3, p, e3), e + bu * decay, e + bi * decay]
        else:
            grads = [q * e3, p * e3, e, e]
        lookups = zip(weights_, (users, items, users, items), grads)
        if lr is None:  # the optimizers step from dense gradients, as after backward()
            for j, (table, ids, grad) in enumerate(lookups):
                table.grad = buffers.add(j, ids, grad.reshape(-1, table.shape[1]))
            if len(bias_grad) < len(model.bias):  # the members after the first k have no gradient
                bias_grad = torch.cat([bias_grad, bias_grad.new_zeros(len(model.bias) - len(bias_grad), 1)])
            model.bias.grad = bias_grad.reshape(model.bias.shape)
            for opt in optimizers:
                opt.step()
            buffers.clear()
            return losses
        for table, ids, grad in lookups:
            table.index_add_(0, ids, grad.reshape(-1, table.shape[1]))
        bias.sub_(bias_grad * lr)
        return losses

    return step


def _plain_sgd_rates(optimizers: list[torch.optim.Optimizer]) -> list[float] | None:
    """The learning rates (one, or one per member) of plain SGD, which moves only the rows with a
    gradient; None for any other optimizer."""
    if len(optimizers) != 1:
        return None
    opt = optimizers[0]
    if isinstance(opt, MemberSGD):
        return None if any(opt.member_mom) or any(opt.member_wd) else opt.member_lr
    if type(opt) is torch.optim.SGD and len(opt.param_groups) == 1:
        group = opt.param_groups[0]
        if not (group["momentum"] or group["weight_decay"] or group["nesterov"] or group["maximize"]):
            return [group["lr"]]
    return None

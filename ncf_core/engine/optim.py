"""Optimizers: a fused dense step, and a lazy row-wise Adam for sparse embedding gradients.

With dense gradients every Adam step reads and writes every row of every embedding table, even
though a batch of 256 touches a few hundred rows; on a CPU that memory traffic is most of a
training step, and ten stacked seeds make it ten times worse. ``TrainConfig.sparse`` switches the
embeddings to sparse gradients and this lazy Adam (only the rows in the batch move, their moments
included, as with ``torch.optim.SparseAdam``). It is a different optimizer from dense Adam, so it
is opt-in and recorded in every trial's config.

Members: a stacked module (``ncf_core.engine.stacked``) holds S models whose every parameter has the member
axis first. Given one learning rate, weight decay and momentum per member, each optimizer steps each
member's block of each parameter with that member's own settings, with the arithmetic of the same
optimizer on that member alone (``tests/ncf_core/engine/test_members.py``); that is what lets tuning trials with
different learning rates train as one stacked module. Members may also step unequally often (trials
with their own negatives or batch size run out of batches at different steps): ``stepping.set_active`` names
the members that step next, and a member-wise optimizer keeps one step count per member, so Adam's
bias correction is the member's own.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ncf_core.config import TrainConfig
from ncf_core.engine import rowadam
from ncf_core.engine.stepping import active_counts, rows_of


class _Unhooked:
    """No profiler label and no step hooks around ``step``: torch wraps every optimizer's ``step``
    in a ``record_function``, which costs about 50 us a call inside a CPU training loop, as much as
    the update of a small model's dense parameters."""

    def _patch_step_function(self) -> None:  # torch's Optimizer.__init__ calls it to wrap ``step``
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"

    def register_step_pre_hook(self, hook):  # noqa: ANN001, ANN201
        raise TypeError(f"{type(self).__name__} runs no step hooks")

    register_step_post_hook = register_step_pre_hook


class LazyAdam(_Unhooked, torch.optim.Optimizer):
    """``torch.optim.Adam``'s update applied only to the rows in the batch (lazy Adam).

    Rows absent from a batch keep their weights and moments, as in ``torch.optim.SparseAdam``;
    the update itself is Adam's arithmetic on the batch's rows, so with every row in every batch this
    is dense Adam (``tests/ncf_core/engine/test_stacked.py``). ``weight_decay`` is an L2 term on the batch's rows only.
    CPU tables take one compiled pass (``ncf_core.engine.rowadam``); other devices gather the rows, run
    torch's fused kernel on them and scatter them back.
    """

    def __init__(self, params, lr: float | list[float] = 1e-3, betas: tuple[float, float] = (0.9, 0.999),  # noqa: ANN001
                 eps: float = 1e-8, weight_decay: float | list[float] = 0.0, apart: bool = False) -> None:
        self.member_lr, self.member_wd = _per_member(lr, weight_decay, apart)
        self.active: list[bool] | None = None  # set_active
        super().__init__(params, {"lr": self.member_lr[0], "betas": betas, "eps": eps,
                                  "weight_decay": self.member_wd[0]})
        self._slots: dict[torch.Tensor, np.ndarray] = {}  # rowadam's scratch, one per CPU table

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return None

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's Optimizer signature
        seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # NeuMF's tables share ids
        members = len(self.member_lr)
        for group in self.param_groups:
            params, rows, grads, p_rows, m_rows, v_rows = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.device.type not in ("cpu", "cuda"):
                    raise ValueError("LazyAdam runs on CPU and CUDA tensors")
                state = self.state[p]
                if not state:  # one step count per member (a member may sit a step out)
                    state["step"] = torch.zeros(() if members == 1 else members, dtype=torch.float32,
                                                device=p.device)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                if self.active is not None:
                    p.grad = rows_of(p.grad, self.active)
                counts = active_counts(self.active, members, p.device)
                state["step"].add_(1 if counts is None else counts)
                if rowadam.usable(p):
                    self._step_rows_on_cpu(p, group)
                    continue
                r, g = self._rows_and_grad(p.grad, seen)
                params.append(p)
                rows.append(r)
                grads.append(g)
                p_rows.append(p.index_select(0, r))
                m_rows.append(state["exp_avg"].index_select(0, r))
                v_rows.append(state["exp_avg_sq"].index_select(0, r))
            if not params:
                continue
            beta1, beta2 = group["betas"]
            for s, lr, wd, pick in self._member_rows(params, rows):
                steps = [self.state[p]["step"].view(-1)[s] for p in params]
                picked = [(t if m is None else t[m] for t, m in zip(ts, pick))
                          for ts in (p_rows, grads, m_rows, v_rows)]
                p_sel, g_sel, m_sel, v_sel = (list(x) for x in picked)
                torch._fused_adam_(p_sel, g_sel, m_sel, v_sel, [], steps, amsgrad=False, lr=lr, beta1=beta1,
                                   beta2=beta2, weight_decay=wd, eps=group["eps"], maximize=False)
                for target, selected, m in ((p_rows, p_sel, pick), (m_rows, m_sel, pick), (v_rows, v_sel, pick)):
                    for j, mask in enumerate(m):
                        if mask is not None:  # the kernel updated a gathered copy: write it back
                            target[j][mask] = selected[j]
            for p, r, pr, mr, vr in zip(params, rows, p_rows, m_rows, v_rows):
                p.index_copy_(0, r, pr)
                self.state[p]["exp_avg"].index_copy_(0, r, mr)
                self.state[p]["exp_avg_sq"].index_copy_(0, r, vr)
        return None

    def _member_rows(self, params: list[torch.Tensor], rows: list[torch.Tensor]):  # noqa: ANN202
        """(member, lr, weight decay, row masks) per stepping member: a member's rows are its block of each table."""
        members = len(self.member_lr)
        if members == 1:
            return [(0, self.member_lr[0], self.member_wd[0], [None] * len(params))]
        return [(s, lr, wd, [r // (len(p) // members) == s for p, r in zip(params, rows)])
                for s, (lr, wd) in enumerate(zip(self.member_lr, self.member_wd))
                if self.active is None or self.active[s]]

    def _step_rows_on_cpu(self, p: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if p not in self._slots:
            self._slots[p] = np.full(len(p), -1, dtype=np.int32)
        rowadam.lazy_adam_rows_(p, state["exp_avg"], state["exp_avg_sq"], self._slots[p], p.grad,
                                state["step"].view(-1).tolist(), self.member_lr, group["betas"], group["eps"],
                                self.member_wd)

    @staticmethod
    def _rows_and_grad(grad: torch.Tensor, seen: list) -> tuple[torch.Tensor, torch.Tensor]:
        """The distinct rows of a gradient and its summed values (a dense gradient: every row)."""
        if not grad.is_sparse:
            return torch.arange(len(grad), device=grad.device), grad
        ids, values = grad._indices()[0], grad._values()
        match = next(((r, inv) for other, r, inv in seen
                      if other.shape == ids.shape and torch.equal(other, ids)), None)
        if match is None:
            match = torch.unique(ids, return_inverse=True)
            seen.append((ids, *match))
        rows, inverse = match
        return rows, values.new_zeros((len(rows), *values.shape[1:])).index_add_(0, inverse, values)


class FusedAdam(_Unhooked, torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` minus its per-step Python bookkeeping.

    At batch 256 the fused kernel is a fraction of ``Adam.step``; the rest is Python regrouping
    the same tensors every step. Once the first step has created the state, this calls the same
    kernel on cached lists with one step counter for all parameters, and ``zero_grad`` just drops
    the gradients. The update is torch's, bit for bit (``tests/ncf_core/engine/test_stacked.py``).
    """

    def __init__(self, params, lr: float | list[float] = 1e-3,  # noqa: ANN001
                 weight_decay: float | list[float] = 0.0, apart: bool = False) -> None:
        self.member_lr, self.member_wd = _per_member(lr, weight_decay, apart)
        self.active: list[bool] | None = None  # set_active
        super().__init__(params, lr=self.member_lr[0], weight_decay=self.member_wd[0], fused=True)
        # The cached step takes no grad_scale/found_inf: GradScaler must unscale before step, as for
        # any optimizer that does not declare this (torch's fused Adam does).
        self._step_supports_amp_scaling = False
        self._forget_cache()

    def _forget_cache(self) -> None:
        """The cache points at the current parameters and state tensors: rebuilt after any change."""
        self._params = [p for group in self.param_groups for p in group["params"]]
        self._lists: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None = None

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "_lists"):  # torch's __init__ adds the first groups before ours has run
            self._forget_cache()

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._forget_cache()

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for p in self._params:
            p.grad = None
        return None

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's Optimizer signature
        grads = [p.grad for p in self._params]
        if len(self.member_lr) > 1:
            return self._member_step(grads)
        if self._lists is None or any(g is None for g in grads):
            if self._lists is not None:  # a parameter without a gradient: each its own counter again
                for p in self._params:
                    self.state[p]["step"] = self.state[p]["step"].clone()
            super().step()
            self._lists = self._shared_state() if all(g is not None for g in grads) else None
            return None
        group = self.param_groups[0]
        exp_avgs, exp_avg_sqs, steps = self._lists
        steps[0].add_(1)  # the same tensor for every parameter
        torch._fused_adam_(self._params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                           beta1=group["betas"][0], beta2=group["betas"][1], weight_decay=group["weight_decay"],
                           eps=group["eps"], maximize=False)
        return None

    def _member_step(self, grads: list[torch.Tensor | None]) -> None:
        """Each member's block of every parameter with its own lr and weight decay: one fused call per
        member on that member's blocks (every stacked parameter has the member axis first, so a
        member's block is one contiguous view). The same kernel on the same values as the member's
        own optimizer, with no update buffers to clear and scale. Each member counts its own steps
        (one tensor of them for all parameters): one that sits a step out (``active``) keeps its count."""
        members = len(self.member_lr)
        if self._lists is None:  # state as torch creates it (or carried over)
            carried = [self.state[p]["step"] for p in self._params if self.state[p]]
            steps = carried[0] if carried else torch.zeros(members, dtype=torch.float32, device=self._params[0].device)
            for p in self._params:
                state = self.state[p]
                if not state:
                    state.update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] = steps
            self._lists = ([], [], [steps])
            # each member's blocks of the parameters and their moments, as views made once
            views = [[t.view(members, -1).unbind() for t in (p, self.state[p]["exp_avg"], self.state[p]["exp_avg_sq"])]
                     for p in self._params]
            self._blocks = [[[v[k][s] for v in views] for k in range(3)] for s in range(members)]
            self._member_steps = steps.unbind()
        steps = self._lists[2][0]
        counts = active_counts(self.active, members, steps.device)
        steps.add_(1 if counts is None else counts)
        live = [j for j, g in enumerate(grads) if g is not None]
        grad_blocks = [grads[j].contiguous().view(members, -1).unbind() for j in live]
        group = self.param_groups[0]
        for s, (lr, wd) in enumerate(zip(self.member_lr, self.member_wd)):
            if self.active is not None and not self.active[s]:
                continue
            params, exp_avgs, exp_avg_sqs = ([block[j] for j in live] for block in self._blocks[s])
            torch._fused_adam_(params, [g[s] for g in grad_blocks], exp_avgs, exp_avg_sqs, [],
                               [self._member_steps[s]] * len(live), amsgrad=False, lr=lr, beta1=group["betas"][0],
                               beta2=group["betas"][1], weight_decay=wd, eps=group["eps"], maximize=False)

    def _shared_state(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None:
        """Cached state lists, once every parameter has stepped equally often in one group."""
        states = [self.state[p] for p in self._params]
        if len(self.param_groups) != 1 or len({float(s["step"]) for s in states}) != 1:
            return None
        step = states[0]["step"]
        for s in states:
            s["step"] = step
        return [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [step] * len(states)


class MemberSGD(_Unhooked, torch.optim.Optimizer):
    """``torch.optim.SGD`` (no dampening, no Nesterov) with one lr, weight decay and momentum per
    member: each member's block of each stacked parameter steps as that member's SGD would."""

    def __init__(self, params, lr: list[float], momentum: list[float], weight_decay: list[float]) -> None:  # noqa: ANN001
        self.member_lr, self.member_mom, self.member_wd = list(lr), list(momentum), list(weight_decay)
        self.active: list[bool] | None = None  # set_active
        self._rates: torch.Tensor | None = None  # -lr per member, for plain SGD's sparse rows
        super().__init__(params, {"lr": self.member_lr[0]})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's Optimizer signature
        members = len(self.member_lr)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if self.active is not None and p.grad.is_sparse:
                    p.grad = rows_of(p.grad, self.active)
                if p.grad.is_sparse and not any(self.member_mom) and not any(self.member_wd):
                    self._rows_step(p, members)
                    continue
                grad = (p.grad.to_dense() if p.grad.is_sparse else p.grad).reshape(members, -1)
                weights = p.view(members, -1)
                state = self.state[p]
                for s, (lr, mom, wd) in enumerate(zip(self.member_lr, self.member_mom, self.member_wd)):
                    if self.active is not None and not self.active[s]:
                        continue
                    g = grad[s] if wd == 0 else grad[s].add(weights[s], alpha=wd)
                    if mom != 0:  # a zero buffer's first step is torch's clone of the gradient, bit for bit
                        if "momentum_buffer" not in state:
                            state["momentum_buffer"] = torch.zeros_like(p)
                        g = state["momentum_buffer"].view(members, -1)[s].mul_(mom).add_(g)
                    weights[s].add_(g, alpha=-lr)
        return None

    def _rows_step(self, p: torch.Tensor, members: int) -> None:
        """Plain SGD on a sparse gradient: only its rows move, each by its member's lr."""
        grad = p.grad.coalesce()
        ids, values = grad.indices()[0], grad.values()
        if self._rates is None:  # made once, not every step
            self._rates = torch.tensor([-lr for lr in self.member_lr], dtype=p.dtype, device=p.device)
        p.index_add_(0, ids, values * self._rates[ids // (len(p) // members)].view(-1, *[1] * (values.dim() - 1)))


def plain_sgd(cfgs: TrainConfig | list[TrainConfig]) -> bool:
    """SGD without momentum or weight decay moves only the rows that have a gradient, so sparse
    embedding gradients give the dense step exactly, without a dense gradient table each step (on
    ML-1M's tables most of a step's work). ``ncf_core.engine.train`` switches them on for it."""
    cfgs = cfgs if isinstance(cfgs, list) else [cfgs]
    return all(c.optimizer == "sgd" and c.momentum == 0 and c.weight_decay == 0 and not c.compile for c in cfgs)


def _per_member(lr: float | list[float], weight_decay: float | list[float],
                apart: bool = False) -> tuple[list[float], list[float]]:
    lrs = [float(x) for x in (lr if isinstance(lr, (list, tuple)) else [lr])]
    wds = [float(x) for x in (weight_decay if isinstance(weight_decay, (list, tuple)) else [weight_decay] * len(lrs))]
    if len(lrs) == 1 < len(wds):
        lrs = lrs * len(wds)
    if len(lrs) != len(wds):
        raise ValueError("one learning rate and one weight decay per member")
    if len(set(zip(lrs, wds))) == 1 and not apart:  # one setting for all, stepping together: the whole-tensor path
        return lrs[:1], wds[:1]
    return lrs, wds


def make_optimizer(model: nn.Module, cfg: TrainConfig | list[TrainConfig],
                   device: torch.device, apart: bool = False) -> list[torch.optim.Optimizer]:
    """Sparse embedding gradients get ``LazyAdam`` / sparse SGD; the rest a fused step.

    ``cfg`` is one config, or one per member of a stacked ``model`` (their lr, weight decay and
    momentum may differ; the rest is one structure). ``apart``: member-wise optimizers even where the
    members' settings agree, so that they can step unequally often (``stepping.set_active``). The fused kernel
    updates every dense parameter at once: on a 2-core CPU about 1.3x the foreach step at batch 256.
    """
    cfgs = cfg if isinstance(cfg, list) else [cfg]
    first = cfgs[0]
    lr, wd, mom = ([getattr(c, f) for c in cfgs] for f in ("lr", "weight_decay", "momentum"))
    split = apart or len(set(zip(lr, wd, mom))) > 1
    lr, wd = (x if split else x[0] for x in (lr, wd))
    sparse = [p for m in model.modules() if getattr(m, "sparse", False) for p in m.parameters()]
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    fast = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    opts: list[torch.optim.Optimizer] = []
    if first.optimizer == "adam":
        if fast.get("fused") or split:
            opts.append(FusedAdam(dense, lr=lr, weight_decay=wd, apart=apart))
        else:
            opts.append(torch.optim.Adam(dense, lr=lr, weight_decay=wd, **fast))
        if sparse:
            opts.append(LazyAdam(sparse, lr=lr, weight_decay=wd, apart=apart))
    elif split:
        opts.append(MemberSGD(dense + sparse, lr=lr, momentum=mom, weight_decay=wd))
    else:
        opts.append(torch.optim.SGD(dense + sparse, lr=lr, momentum=first.momentum,
                                    weight_decay=wd))  # TrainConfig rejects it with sparse
    return opts

"""Training: batches sliced from device-resident tensors, one seed for everything.

``fit`` trains in place, keeps the weights of the best validation epoch, and reports each
epoch to ``on_epoch``, which stops training by returning False (Optuna's pruning hooks in there).
``fit_stacked`` does the same for several members at once, as one stacked model: seeds of one
variant, or tuning trials with their own learning rates, batch sizes and negatives (``Layout``);
``fit_group`` picks one or the other.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch
from torch import nn

from ncf_core.config import TrainConfig
from ncf_core.data.negatives import NegativeSampler
from ncf_core.data.splits import Split
from ncf_core.engine import gradients
from ncf_core.engine.gradients import row_gradients
from ncf_core.engine.history import Diverged, EpochStats, History
from ncf_core.engine.mf_step import mf_step
from ncf_core.engine.optim import make_optimizer, plain_sgd
from ncf_core.engine.seeding import device_generator, stream_seed, sync
from ncf_core.engine.stacked import stack, unstack
from ncf_core.engine.stepping import keep_members
from ncf_core.engine.streams import Layout, add_losses
from ncf_core.evaluate import Evaluator
from ncf_core.losses import loss_fn
from ncf_core.models.base import lookup_penalty, set_dropout_generators
from ncf_core.tasks import higher_is_better, task_of


class _SeedData:
    """One seed's training pairs on the device and the generator that fixes its order and negatives.

    ``fit`` and ``fit_stacked`` draw epochs from here in the same order, so a seed sees the same
    batches whether it trains alone or stacked with others.
    """

    def __init__(self, split: Split, cfg: TrainConfig, device: torch.device, seed: int) -> None:
        self.cfg, self.seed, self.gen = cfg, seed, device_generator(device, seed)
        self.dropout_gen = device_generator(device, stream_seed(seed, "dropout"))
        train = split.train
        self.users = torch.from_numpy(train.users).to(device)
        self.items = torch.from_numpy(train.items).to(device)
        self.target = torch.from_numpy(train.target).to(device)
        self.sampler = None
        if task_of(cfg.task).implicit:
            self.target = torch.ones_like(self.target)
            self.sampler = NegativeSampler(self.users * train.n_items + self.items, train.n_items)

    def __len__(self) -> int:
        return len(self.users) * task_of(self.cfg.task).examples_per_row(self.cfg.n_negatives)

    def epoch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This epoch's (users, items, targets): negatives drawn in one call, then shuffled."""
        u, i, y = self.users, self.items, self.target
        if self.sampler is not None:
            neg_users = u.repeat_interleave(self.cfg.n_negatives)
            neg_items = self.sampler.sample(neg_users, self.gen)
            u, i = torch.cat([u, neg_users]), torch.cat([i, neg_items])
            y = torch.cat([y, torch.zeros_like(neg_users, dtype=y.dtype)])
        order = torch.randperm(len(u), generator=self.gen, device=u.device)
        return u[order], i[order], y[order]


class _Selector:
    """Best-validation-epoch bookkeeping of one model: history, best weights, patience."""

    def __init__(self, model: nn.Module, metric: str, cfg: TrainConfig, select: bool = True) -> None:
        self.model, self.cfg, self.select = model, cfg, select
        self.history = History(metric=metric, higher_is_better=higher_is_better(metric))
        self.best_state = copy.deepcopy(model.state_dict()) if select else None
        self.bad_epochs = 0

    def record(self, stats: EpochStats) -> bool:
        """Keep ``stats``; False once patience has run out. Without selection every epoch is kept."""
        if not self.select:
            self.history.best_epoch = stats.epoch
            self.history.epochs.append(stats)
            return True
        if self.history.improved(stats.valid_metric):
            self.history.best_epoch = stats.epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        self.history.epochs.append(stats)
        return self.cfg.patience is None or self.bad_epochs < self.cfg.patience

    def finish(self) -> History:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.history


_NO_VALIDATION = (math.nan, math.nan)


def train_steps(model: nn.Module, optimizers: list[torch.optim.Optimizer], cfg: TrainConfig, u: torch.Tensor,
                i: torch.Tensor, y: torch.Tensor, l2: torch.Tensor | float | None = None,
                layout: Layout | None = None) -> torch.Tensor:
    """The engine's inner loop: steps over pre-shuffled pairs (last axis, a leading member axis when
    stacked); returns the summed loss per model. ``l2``: per-member weights of the lookup penalty
    (S,), where stacked members differ in it; else ``cfg.l2``. ``layout``: where stacked members have
    their own batch sizes or numbers of examples, the pairs as it lays them out, step by step."""
    model.train()
    # Dense Adam decays the moments of rows without a gradient by beta1 each step: after ~800 steps
    # they are denormal floats, which CPUs compute far slower (a stacked ML-1M GMF epoch: 18.7 s,
    # 5.8 s flushed). Flushed to zero, only values below ~1e-38 change. A process-wide setting.
    torch.set_flush_denormal(True)
    n = u.shape[-1]
    total = torch.zeros(u.shape[:-1], device=u.device)
    graphs = cfg.compile and u.device.type == "cuda"
    autocast = torch.autocast(u.device.type, dtype=torch.bfloat16) if cfg.amp else contextlib.nullcontext()
    l2 = cfg.l2 if l2 is None else l2
    penalised = bool(l2.any()) if isinstance(l2, torch.Tensor) else bool(l2)
    closed_form = mf_step(model, optimizers, cfg, l2)
    dense_rows = gradients.DenseFromRows(model) if closed_form is None and gradients.densified(model, cfg, u.device) \
        else None
    spans = [(lo, min(lo + cfg.batch_size, n), None) for lo in range(0, n, cfg.batch_size)] if layout is None \
        else layout.spans
    weights = None
    try:
        for step, (lo, hi, k) in enumerate(spans):
            batch: int | torch.Tensor = hi - lo
            uu, ii, yy = u[..., lo:hi], i[..., lo:hi], y[..., lo:hi]
            member_l2 = l2
            if layout is not None:  # the first k members: those whose examples have not run out
                weights, batch = layout.enter(step, model, optimizers)
                uu, ii, yy = uu[:k], ii[:k], yy[:k]
                member_l2 = l2[:k] if isinstance(l2, torch.Tensor) else l2
            if closed_form is not None:
                add_losses(total, closed_form(uu, ii, yy, weights), batch)
                continue
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are dead
            with autocast:
                logits = model(uu, ii)
            if logits.dtype not in (torch.float32, torch.float64):  # amp's bfloat16: the loss in float32
                logits = logits.float()
            losses = loss_fn(cfg.task, logits, yy.to(logits.dtype), weights)
            objective = losses
            if penalised:
                penalty = lookup_penalty(model, uu, ii)
                objective = objective + member_l2 / 2 * (penalty.mean(-1) if weights is None
                                                         else (penalty * weights).sum(-1))
            if cfg.reduction == "sum":  # every example's gradient at the full step, as per-example SGD
                objective = objective * batch
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            (objective.sum() if objective.dim() else objective).backward()
            if dense_rows is not None:
                dense_rows.densify()
            for opt in optimizers:
                opt.step()
            if dense_rows is not None:
                dense_rows.clear()
            add_losses(total, losses.detach(), batch)
    finally:
        if dense_rows is not None:
            dense_rows.restore()
        if layout is not None:
            layout.leave(model, optimizers)
    return total


def step_module(model: nn.Module, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The module the training steps call: compiled on request (CUDA graphs on CUDA, where a small
    batch is otherwise bound by kernel launches). Evaluation keeps calling the eager ``model``."""
    if not cfg.compile:
        return model
    with warnings.catch_warnings():
        # torch.compile imports torch.utils.mkldnn, whose classes use torch's own deprecated
        # torch.jit.script_method: torch's warning about torch, nothing this project can change.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is deprecated",
                                category=DeprecationWarning)
        return torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None)


def fit(
    model: nn.Module,
    split: Split,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    *,
    seed: int = 0,
    on_epoch: Callable[[EpochStats], bool | None] | None = None,
    select: bool = True,
) -> History:
    """Train ``model`` on ``split.train``, select the best epoch on ``split.valid``.

    ``select=False`` trains exactly ``cfg.epochs`` epochs and keeps the last weights, without
    looking at ``split.valid`` (the refit on training + validation data after selection).
    """
    device = torch.device(device)
    data = _SeedData(split, cfg, device, seed)
    evaluator = Evaluator(split, "valid", device, k=cfg.k) if select else None
    restore = row_gradients(model, plain_sgd(cfg))
    optimizers = make_optimizer(model, cfg, device)
    selector = _Selector(model, task_of(cfg.task).selection_metric(cfg.k), cfg, select)
    step_model = step_module(model, cfg, device)
    set_dropout_generators(model, [data.dropout_gen])
    try:
        for epoch in range(1, cfg.epochs + 1):
            sync(device)
            start = time.perf_counter()
            total = train_steps(step_model, optimizers, cfg, *data.epoch())
            sync(device)
            seconds = time.perf_counter() - start
            train_loss = float(total) / len(data)
            if task_of(cfg.task).diverged(train_loss):
                raise Diverged(f"training loss is {train_loss:.4g} at epoch {epoch}")
            valid = evaluator.loss_and_metric(model) if evaluator is not None else _NO_VALIDATION
            stats = EpochStats(epoch, train_loss, *valid, seconds, len(data))
            go_on = selector.record(stats)
            if on_epoch is not None and on_epoch(stats) is False:
                go_on = False
            if not go_on:
                break
    finally:
        set_dropout_generators(model, None)
        restore()
    return selector.finish()


MEMBER_SETTINGS = ("lr", "weight_decay", "momentum", "l2")  # what stacked members may differ in (TrainConfig)
MEMBER_STREAMS = ("n_negatives", "batch_size")  # and their examples: each member its own stream (Layout)

# After each epoch, per member: False drops the member (a pruned tuning trial); its history ends there.
OnEpoch = Callable[[int, EpochStats], bool]


def fit_stacked(
    models: list[nn.Module],
    splits: list[Split],
    cfg: TrainConfig | list[TrainConfig],
    device: torch.device | str = "cpu",
    *,
    seeds: list[int],
    select: bool = True,
    on_epoch: OnEpoch | None = None,
) -> list[History | Diverged]:
    """Train S members as one stacked model: the same batches, weights and selection as ``fit`` on
    each member alone, with one forward and backward per step for all of them.

    A member is a model with its split, seed and config. Members are seeds of one variant, or tuning
    trials: ``cfg`` may then be one config per member, differing in ``MEMBER_SETTINGS`` and
    ``MEMBER_STREAMS`` only (the models may differ in anything that keeps their shapes). Members
    that share a split, seed and negatives share one draw of each epoch's examples. A member that
    diverges, runs out of patience or is stopped by ``on_epoch`` leaves the stack (the others are
    restacked and go on, their optimizer state carried over) and is reset to its best epoch.
    """
    device = torch.device(device)
    cfgs = list(cfg) if isinstance(cfg, list) else [cfg] * len(models)
    _check_members(cfgs)
    shared = cfgs[0]
    data = _once([(id(sp), s, c.n_negatives) for sp, s, c in zip(splits, seeds, cfgs)],
                 [lambda sp=sp, s=s, c=c: _SeedData(sp, c, device, s) for sp, s, c in zip(splits, seeds, cfgs)])
    evaluators = _once([id(sp) for sp in splits],
                       [lambda sp=sp: Evaluator(sp, "valid", device, k=shared.k) if select else None for sp in splits])
    metric = task_of(shared.task).selection_metric(shared.k)
    selectors = [_Selector(m, metric, c, select) for m, c in zip(models, cfgs)]
    outcome: list[History | Diverged | None] = [None] * len(models)
    stack_state = _Stack(models, cfgs, data, device)
    live = stack_state.live  # the stack's order of the members
    try:
        for epoch in range(1, shared.epochs + 1):
            sync(device)
            start = time.perf_counter()
            total = stack_state.epoch().tolist()
            sync(device)
            seconds = time.perf_counter() - start
            for position, s in sorted(enumerate(live), key=lambda member: member[1]):  # told in the members' order
                train_loss = total[position] / len(data[s])
                if task_of(shared.task).diverged(train_loss):
                    outcome[s] = Diverged(f"training loss is {train_loss:.4g} at epoch {epoch}")
                    continue
                models[s].load_state_dict(unstack(stack_state.module, position))
                valid = evaluators[s].loss_and_metric(models[s]) if evaluators[s] is not None else _NO_VALIDATION
                stats = EpochStats(epoch, train_loss, *valid, seconds, len(data[s]))
                go_on = selectors[s].record(stats)
                if on_epoch is not None and not on_epoch(s, stats):
                    go_on = False
                if not go_on:
                    outcome[s] = selectors[s].history
            keep = [position for position, s in enumerate(live) if outcome[s] is None]
            if not keep:
                break
            if len(keep) < len(live):
                stack_state.keep(keep, [live[position] for position in keep])
                live = stack_state.live
    finally:
        stack_state.close()
    return [o if isinstance(o, Diverged) else sel.finish() for o, sel in zip(outcome, selectors)]


def _once(keys: list, makers: list[Callable[[], Any]]) -> list[Any]:
    """``makers[j]()`` for each distinct key, shared by the members with that key."""
    made: dict[Any, Any] = {}
    for key, make in zip(keys, makers):
        if key not in made:
            made[key] = make()
    return [made[key] for key in keys]


def _check_members(cfgs: list[TrainConfig]) -> None:
    own = MEMBER_SETTINGS + MEMBER_STREAMS
    shared = {f.name for f in fields(TrainConfig)} - set(own)
    for c in cfgs[1:]:
        differ = [name for name in sorted(shared) if getattr(c, name) != getattr(cfgs[0], name)]
        if differ:
            raise ValueError(f"stacked members may differ only in {own}, not in {differ}")
    if cfgs[0].compile and len({(c.n_negatives, c.batch_size) for c in cfgs}) > 1:
        raise ValueError("compiled stacked members share their batch size and negatives (CUDA graphs take one shape)")


class _Stack:
    """The live members as one stacked module with its optimizers; restacked when members leave."""

    def __init__(self, models: list[nn.Module], cfgs: list[TrainConfig], data: list[_SeedData],
                 device: torch.device) -> None:
        self.models, self.cfgs, self.data, self.device = models, cfgs, data, device
        # members that share their examples still draw their own dropout masks
        self.dropout_gens = [device_generator(device, stream_seed(d.seed, "dropout")) for d in data]
        self._build(list(range(len(models))))

    def _build(self, live: list[int]) -> None:
        lengths = {s: len(self.data[s]) for s in live}
        sizes = {s: self.cfgs[s].batch_size for s in live}
        ragged = len({(lengths[s], sizes[s]) for s in live}) > 1
        if ragged:  # most steps first: a step's members are then the stack's first k (Layout)
            live = [live[p] for p in Layout.order([lengths[s] for s in live], [sizes[s] for s in live])]
        self.live = live
        self.module = stack([self.models[s] for s in live], widest=self.models)  # shapes kept as members leave
        cfgs = [self.cfgs[s] for s in live]
        self.layout = Layout([lengths[s] for s in live], [sizes[s] for s in live], self.device) if ragged else None
        row_gradients(self.module, plain_sgd(cfgs))  # a module of its own: nothing to switch back
        self.optimizers = make_optimizer(self.module, cfgs, self.device, apart=ragged)
        self.step_model = step_module(self.module, cfgs[0], self.device)
        l2 = [c.l2 for c in cfgs]
        self.l2 = torch.tensor(l2, device=self.device) if len(set(l2)) > 1 else None
        set_dropout_generators(self.module, [self.dropout_gens[s] for s in live])

    def epoch(self) -> torch.Tensor:
        parts = _once([id(self.data[s]) for s in self.live], [self.data[s].epoch for s in self.live])
        draws = {id(p) for p in parts}
        if self.layout is not None:  # members with their own examples: each its own batches
            u, i, y = self.layout.lay_out(parts)
        elif len(draws) == 1:  # members that share their examples: one draw, viewed S times
            u, i, y = (t.expand(len(parts), -1) for t in parts[0])
        else:
            u, i, y = (torch.stack(column) for column in zip(*parts))
        return train_steps(self.step_model, self.optimizers, self.cfgs[self.live[0]], u, i, y, self.l2, self.layout)

    def keep(self, positions: list[int], live: list[int]) -> None:
        """Restack without the members that left; the others' optimizer state comes along."""
        old, members = self.optimizers, len(self.live)
        self.close()
        self._build(live)
        for before, after in zip(old, self.optimizers, strict=True):
            keep_members(before, after, members, positions)

    def close(self) -> None:
        set_dropout_generators(self.module, None)


def fit_group(models: list[nn.Module], splits: list[Split], cfg: TrainConfig | list[TrainConfig],
              device: torch.device | str, seeds: list[int], select: bool = True,
              on_epoch: OnEpoch | None = None, stack_members: bool = True) -> tuple[list[History | Exception], int]:
    """Members stacked when there are several with training sets of one size (and ``stack_members``),
    else one by one (also compiled members with their own batch sizes or negatives: a CUDA graph
    takes one shape); a diverged member is an outcome, not an exception. Returns the outcomes and
    the stack size."""
    cfgs = list(cfg) if isinstance(cfg, list) else [cfg] * len(models)
    one_shape = not cfgs[0].compile or len({(c.n_negatives, c.batch_size) for c in cfgs}) == 1
    if stack_members and len(models) > 1 and len({len(sp.train) for sp in splits}) == 1 and one_shape:
        return list(fit_stacked(models, splits, cfgs, device, seeds=seeds, select=select,
                                on_epoch=on_epoch)), len(models)
    outcomes: list[History | Exception] = []
    for member, (model, split, c, seed) in enumerate(zip(models, splits, cfgs, seeds)):
        hook = None if on_epoch is None else (lambda stats, m=member: on_epoch(m, stats))
        try:
            outcomes.append(fit(model, split, c, device, seed=seed, select=select, on_epoch=hook))
        except Diverged as err:
            outcomes.append(err)
    return outcomes, 1

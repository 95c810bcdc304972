"""Members of a stack that step unequally: which of them step next, and what an optimizer's state
keeps when some leave.

A stack's members may run out of examples at different steps (their own negatives or batch size,
``ncf_core.engine.streams.Layout``) or leave it (a pruned trial); the member-wise optimizers of
``ncf_core.engine.optim`` read ``active`` and keep one step count per member.
"""

from __future__ import annotations

import functools

import torch


def set_active(optimizers: list[torch.optim.Optimizer], active: list[bool] | None) -> None:
    """The members that step next (None: all). A member without examples in a step must not step:
    Adam's moments would still move its weights, and its step count would run ahead of its own."""
    for opt in optimizers:
        if not hasattr(opt, "active"):
            raise TypeError(f"{type(opt).__name__} steps every member")
        opt.active = None if active is None else tuple(active)


@functools.lru_cache(maxsize=256)
def _counts(active: tuple[bool, ...], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(active, dtype=dtype, device=device)


def active_counts(active: tuple[bool, ...] | None, members: int, device: torch.device) -> torch.Tensor | None:
    """What each member's step count grows by this step (None: one each), made once per device."""
    if active is None:
        return None
    if len(active) != members:
        raise ValueError(f"{len(active)} members named active for an optimizer of {members}")
    return _counts(active, device)


def rows_of(grad: torch.Tensor, active: tuple[bool, ...]) -> torch.Tensor:
    """A sparse gradient of a stacked table without the rows of members that sit this step out."""
    if not grad.is_sparse:
        return grad
    ids = grad._indices()[0]
    keep = _counts(active, ids.device, torch.bool)[ids // (grad.shape[0] // len(active))]
    return torch.sparse_coo_tensor(grad._indices()[:, keep], grad._values()[keep], grad.shape, check_invariants=False)


def keep_members(old: torch.optim.Optimizer, new: torch.optim.Optimizer, members: int, keep: list[int]) -> None:
    """Carry ``old``'s state for the members ``keep`` (of ``members``) over to ``new``, an optimizer of
    the same kind over the same parameters restacked without the others (a pruned tuning trial)."""
    per_member = len(getattr(new, "member_lr", ())) > 1
    old_params = [p for g in old.param_groups for p in g["params"]]
    new_params = [p for g in new.param_groups for p in g["params"]]
    for po, pn in zip(old_params, new_params, strict=True):
        state = old.state.get(po)
        if not state:
            continue
        # each parameter its own step counter, as torch keeps them (FusedAdam shares them again itself)
        new.state[pn] = {k: _kept(k, v, po, pn, members, keep, per_member) for k, v in state.items()}
    if hasattr(new, "_forget_cache"):  # FusedAdam's cached state lists
        new._forget_cache()


def _kept(key: str, value: object, old: torch.Tensor, new: torch.Tensor, members: int, keep: list[int],
          per_member: bool) -> object:
    """One state entry of the members ``keep``: their blocks of a tensor shaped like the parameter,
    their step counts where each member keeps its own (one count where ``new`` steps them together:
    members that step together have stepped equally often)."""
    if not isinstance(value, torch.Tensor):
        return value
    if value.shape == old.shape:
        return value.view(members, -1)[keep].reshape(new.shape).clone()
    if key == "step" and value.dim() == 1:
        return value[keep].clone() if per_member else value[keep[0]].clone()
    return value.clone()

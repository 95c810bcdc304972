"""Lazy Adam on the CPU as one compiled pass over a batch's embedding rows (numba).

Done with torch ops, a lazy Adam step is a dozen kernels per table (``unique``, a scatter-add of the
gradient rows, three gathers, the fused update, three scatters), each touching the same few
thousand random rows of tables that do not fit in cache. Here one pass sums the duplicate ids'
gradients (a per-table slot array instead of a sort) and a second updates each distinct row in
place, weights and moments together, in parallel over rows. The arithmetic is that of
``torch._fused_adam_``. Where numba cannot be imported (the GPU image has none) ``LazyAdam`` keeps
its torch path.
"""

from __future__ import annotations

import math

import numpy as np
import torch

try:
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent (the GPU image)
    numba = None

AVAILABLE = numba is not None


def _sum_duplicates(ids, values, slot, acc, rows):  # noqa: ANN001, ANN202 - numba kernel
    """Distinct rows in order of first appearance, their gradients summed in batch order."""
    n, d = values.shape
    k = 0
    for j in range(n):
        r = ids[j]
        s = slot[r]
        if s < 0:
            s = k
            slot[r] = s
            rows[s] = r
            k += 1
            for c in range(d):
                acc[s, c] = values[j, c]
        else:
            for c in range(d):
                acc[s, c] += values[j, c]
    return k


def _adam_rows(p, m, v, rows, k, acc, slot, step_sizes, beta2, one_minus_beta1, one_minus_beta2, eps, wds,  # noqa: ANN001, ANN202
               bias2_sqrts, member_rows):
    """Adam on rows ``rows[:k]`` in place, as ``torch._fused_adam_`` computes it; frees their slots.
    Row r belongs to member r // member_rows, whose step size, bias correction and weight decay it takes."""
    d = p.shape[1]
    for s in numba.prange(k):
        r = rows[s]
        slot[r] = -1
        step_size = step_sizes[r // member_rows]
        wd = wds[r // member_rows]
        bias2_sqrt = bias2_sqrts[r // member_rows]
        for c in range(d):
            grad = acc[s, c]
            if wd != 0:
                grad = grad + p[r, c] * wd
            mc = m[r, c] + one_minus_beta1 * (grad - m[r, c])
            vc = v[r, c] * beta2 + one_minus_beta2 * grad * grad
            m[r, c] = mc
            v[r, c] = vc
            p[r, c] = p[r, c] - step_size * mc / (np.sqrt(vc) / bias2_sqrt + eps)


if AVAILABLE:
    # error_model="numpy": no zero-division checks, so the row update vectorises. No fastmath: the
    # arithmetic stays IEEE, as in torch's kernel.
    _jit = {"cache": True, "nogil": True, "error_model": "numpy"}
    _sum_duplicates = numba.njit(**_jit)(_sum_duplicates)
    _adam_rows = numba.njit(parallel=True, **_jit)(_adam_rows)


def lazy_adam_rows_(param: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, slot: np.ndarray,
                    grad: torch.Tensor, step: float | list[float], lr: float | list[float], betas: tuple[float, float],
                    eps: float, weight_decay: float | list[float]) -> None:
    """One lazy Adam step of a 2-D CPU float32 table from its sparse (COO, uncoalesced) gradient.

    ``slot`` is the table's scratch: an int32 array of -1, one entry per row, left as found. A list of
    learning rates (and weight decays, and step counts) gives one per member: the table is that many
    equal blocks.
    """
    lrs = lr if isinstance(lr, (list, tuple)) else [lr]
    wds = weight_decay if isinstance(weight_decay, (list, tuple)) else [weight_decay] * len(lrs)
    steps = step if isinstance(step, (list, tuple)) else [step] * len(lrs)
    ids = grad._indices()[0].contiguous().numpy()
    values = grad._values().contiguous().numpy()
    acc = np.empty_like(values)
    rows = np.empty(len(ids), np.int64)
    k = _sum_duplicates(ids, values, slot, acc, rows)
    beta1, beta2 = betas
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    f32 = np.float32  # constants computed in double, then rounded once, as torch does
    step_sizes = np.array([lr / (1 - beta1 ** n) for lr, n in zip(lrs, steps)], dtype=f32)
    _adam_rows(param.detach().numpy(), exp_avg.numpy(), exp_avg_sq.numpy(), rows, k, acc, slot,
               step_sizes, f32(beta2), f32(1 - beta1), f32(1 - beta2), f32(eps), np.array(wds, dtype=f32),
               np.array([math.sqrt(1 - beta2 ** n) for n in steps], dtype=f32), len(param) // len(lrs))


def usable(param: torch.Tensor) -> bool:
    """Whether ``param``'s current gradient can take this kernel (else: LazyAdam's torch path)."""
    return AVAILABLE and param.device.type == "cpu" and param.dtype == torch.float32 and param.dim() == 2 \
        and param.grad is not None and param.grad.is_sparse and param.is_contiguous()

"""Forward-pass timing, CPU vs GPU: every model x device x batch size.

Off in the normal test run (``--benchmark-disable`` runs each once, as a correctness check);
``tox -e bench`` times them and writes results/benchmark.json and results/benchmark.md.
"""

from __future__ import annotations

import pytest
import torch

from ncf_core import ModelConfig
from ncf_core.models import MODELS, build

N_USERS, N_ITEMS = 6040, 3706  # MovieLens-1M table sizes
BATCHES = {"1K": 1 << 10, "64K": 1 << 16, "1M": 1 << 20}
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]


@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward(benchmark, name, device, batch):
    torch.set_num_threads(2)  # fixed, so CPU numbers are comparable between machines of this kind
    gen = torch.Generator().manual_seed(0)
    model = build(name, ModelConfig(), N_USERS, N_ITEMS).to(device).eval()
    n = BATCHES[batch]
    users = torch.randint(N_USERS, (n,), generator=gen).to(device)
    items = torch.randint(N_ITEMS, (n,), generator=gen).to(device)

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            out = model(users, items)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    benchmark.group = f"{name}-{batch}"
    benchmark.extra_info.update(model=name, device=device, batch=n)
    out = benchmark.pedantic(forward, rounds=5 if n >= 1 << 20 else 20, warmup_rounds=2, iterations=1)
    assert out.shape == (n,) and torch.isfinite(out).all()

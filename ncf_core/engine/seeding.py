"""One seed for everything: generators passed explicitly, the global one forked where torch
offers no other (initialisation, dropout), and every device starting from the CPU's weights."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ncf_core.config import ModelConfig
from ncf_core.data.splits import Split
from ncf_core.models import build


def device_generator(device: torch.device | str, seed: int) -> torch.Generator:
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen


def stream_seed(seed: int, name: str) -> int:
    """A generator seed of its own for one use of ``seed`` (data order and dropout never share draws)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1, np.uint64)[0] >> 1)


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Seed torch's global generator (initialisation, dropout) for a block, then restore it, so
    that what a block draws does not depend on what ran before it in the process."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def seeded_model(name: str, cfg: ModelConfig, split: Split, seed: int,
                 device: torch.device | str = "cpu", sparse: bool = False) -> nn.Module:
    """Initialise on the CPU from ``seed`` so every device starts from the same weights."""
    feats = split.train.item_features
    feats_t = None if feats is None else torch.from_numpy(feats)
    with seeded_global_rng(seed):
        model = build(name, cfg, split.n_users, split.n_items, feats_t, sparse)
    return model.to(device)


def sync(device: torch.device | str) -> None:
    """Wait for the device, so that a timer measures finished work."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)

"""A run's options from the command line, checked before anything is read or written."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.params import TunedParams
from bench.search import DEFAULT_PRUNER, PRUNERS, SAMPLER_SEED
from bench.variants import VARIANTS
from ncf_core import DataError

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class RunOptions:
    data_dir: Path | None = None
    datasets: tuple[str, ...] | None = None
    variants: tuple[str, ...] | None = None
    seeds: int | None = None
    devices: tuple[str, ...] | None = None
    epochs: int | None = None
    params: TunedParams = field(default_factory=TunedParams)
    refit: bool | None = None  # None: each data set's protocol decides
    all_rows: bool = False  # read every row, not the protocol's first N (anime's seed protocol: 100,000)
    tune: int | None = None  # equal Optuna budget per (data set, variant); None: the suite's
    tune_stack: int | None = None  # trials trained at a time as one stacked module; None: chosen from memory
    pruner: str = DEFAULT_PRUNER
    sampler_seed: int = SAMPLER_SEED  # TPE's seed for every study of the run
    stack: bool = True  # train a variant's seeds as one stacked model, in groups that fit memory
    jobs: int | None = None  # worker processes for studies and units; None: one per core on a CPU-only run
    threads: int | None = None  # torch threads every job trains on; None: the cores over the jobs
    strict_files: bool = False  # a published split's quirks are errors instead of read as its reference reads them
    synthetic: bool = False  # a missing registered set runs as labelled synthetic data instead of an error
    offline: bool = False  # a missing public set is an error naming the fetch command, not downloaded
    planning: bool = False  # --plan: trains, writes and downloads nothing
    mirror: str | None = None  # fetch from this folder URL instead of each file's origin

    def __post_init__(self) -> None:
        for name in ("seeds", "epochs", "jobs", "threads", "tune_stack"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise DataError(f"--{name.replace('_', '-')}", f"must be a whole number >= 1, not {value!r}")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise DataError(self.data_dir, "data directory not found")
        for flag, names in (("--datasets", self.datasets), ("--variants", self.variants), ("--devices", self.devices)):
            if names is not None and not names:
                raise DataError(flag, "names nothing")
            if names is not None and len(set(names)) != len(names):
                raise DataError(flag, f"names {sorted({n for n in names if names.count(n) > 1})} more than once")
        unknown = [v for v in self.variants or () if v not in VARIANTS]
        if unknown:
            raise DataError("--variants", f"unknown variants {unknown}; known: {list(VARIANTS)}")
        if self.pruner not in PRUNERS:
            raise DataError("--pruner", f"unknown pruner {self.pruner!r}; known: {list(PRUNERS)}")


def cpu_cores() -> int:
    """The cores this process may use (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def present_devices() -> tuple[str, ...]:
    return DEVICES if torch.cuda.is_available() else ("cpu",)


def resolve_devices(requested: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for name in requested:
        names = present_devices() if name == "auto" else (name,)
        for d in names:
            if d == "cuda" and not torch.cuda.is_available():
                raise DataError("--devices", "cuda requested but torch sees no CUDA device")
            if d not in DEVICES:
                raise DataError("--devices", f"unknown device {d!r} ({', '.join(DEVICES)})")
            if d not in out:
                out.append(d)
    return tuple(out)


def memory_budget(devices: tuple[str, ...]) -> int:
    """A quarter of the smallest memory among ``devices`` (host RAM, GPU memory), in bytes."""
    try:
        sizes = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): assume a modest 16 GiB
        sizes = [16 << 30]
    if "cuda" in devices:
        sizes.append(torch.cuda.get_device_properties(0).total_memory)
    return min(sizes) // 4

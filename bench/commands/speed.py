"""``bench speed``: the engine against a reference loop written the usual way, same process.

The reference is what NCF tutorials (and this project's seed write-up) do: a per-sample
``Dataset`` behind a shuffling ``DataLoader``, default optimizer settings. The engine is
``ncf_core.engine.train.fit`` itself, timed over whole training epochs (negative sampling included,
validation excluded). Same model shapes, same batch size, same samples per epoch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset

from ncf_core import DataError, ModelConfig, TrainConfig
from ncf_core.data import split_for_seed, synthetic
from ncf_core.data.splits import Split
from ncf_core.engine.optim import make_optimizer
from ncf_core.engine.seeding import device_generator, seeded_global_rng, seeded_model, sync
from ncf_core.engine.train import fit, fit_stacked, step_module, train_steps
from ncf_core.losses import loss_fn
from ncf_core.models import MODELS, build

# ML-1M's table sizes (6,040 users, 3,706 items) with fewer rows, so an epoch takes seconds.
SHAPE = {"n_users": 6040, "n_items": 3706, "per_user": 10}


class PairDataset(Dataset):
    """One (user, item, label) triple per __getitem__: the usual tutorial dataset."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor) -> None:
        self.users, self.items, self.labels = users, items, labels

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.users[idx], self.items[idx], self.labels[idx]


def reference_samples_per_s(model: torch.nn.Module, split: Split, batch_size: int, device: str,
                            n_negatives: int = 4, max_steps: int = 400, warmup: int = 20) -> float:
    """The usual loop over up to ``max_steps`` batches of one epoch; negatives pre-drawn and the
    first ``warmup`` steps (iterator start, optimizer state) are not timed."""
    gen = torch.Generator().manual_seed(0)
    users = torch.from_numpy(split.train.users)
    items = torch.from_numpy(split.train.items)
    neg_users = users.repeat_interleave(n_negatives)
    neg_items = torch.randint(split.n_items, neg_users.shape, generator=gen)
    data = PairDataset(torch.cat([users, neg_users]), torch.cat([items, neg_items]),
                       torch.cat([torch.ones(len(users)), torch.zeros(len(neg_users))]))
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    warmup = min(warmup, len(loader) // 4)  # tiny data sets keep most of their batches timed
    n, start = 0, 0.0
    for steps, (u, i, y) in enumerate(loader):
        if steps == warmup:
            sync(device)
            n, start = 0, time.perf_counter()
        u, i, y = u.to(device), i.to(device), y.to(device)
        optimizer.zero_grad()
        loss = loss_fn("ranking", model(u, i), y)
        loss.backward()
        optimizer.step()
        n += len(u)
        if steps + 1 >= max_steps:
            break
    sync(device)
    return n / (time.perf_counter() - start)


def engine_samples_per_s(name: str, cfg: ModelConfig, splits: list[Split], batch_size: int, device: str,
                         **engine: bool) -> float:
    """A training epoch of ``fit`` (one split) or ``fit_stacked`` (one model per split), all seeds counted.

    ``engine`` are ``TrainConfig`` switches (sparse, compile, amp). Compiled engines train two
    epochs and report the second, so that compilation is not counted.
    """
    seeds = list(range(len(splits)))
    models = [seeded_model(name, cfg, sp, s, device, engine.get("sparse", False)) for sp, s in zip(splits, seeds)]
    train_cfg = TrainConfig(task="ranking", epochs=2 if engine.get("compile") else 1, batch_size=batch_size,
                            n_negatives=4, **engine)
    if len(models) == 1:
        histories = [fit(models[0], splits[0], train_cfg, device, seed=0)]
    else:
        histories = fit_stacked(models, splits, train_cfg, device, seeds=seeds)
    return sum(h.epochs[-1].samples / h.epochs[-1].seconds for h in histories)


MODES = {"single": 1, "stacked10": 10}
# Engine switches (TrainConfig fields). dense: the paper's Adam; sparse: only the batch's embedding
# rows, lazy Adam; graphs: torch.compile with CUDA graphs; bf16: autocast. The last two on CUDA only.
ENGINES: dict[str, dict[str, bool]] = {
    "dense": {}, "sparse": {"sparse": True},
    "graphs": {"compile": True}, "graphs-bf16": {"compile": True, "amp": True},
}
CUDA_ONLY = ("graphs", "graphs-bf16")
MAX_DRIFT = 1.5  # reference before vs after: beyond this the machine's load changed mid-measurement


def measure(devices: tuple[str, ...], batch_sizes: tuple[int, ...], models: tuple[str, ...] = tuple(MODELS),
            modes: tuple[str, ...] = tuple(MODES), log=print, shape: dict[str, int] = SHAPE) -> pd.DataFrame:
    data = synthetic.generate(**shape, seed=0, task="ranking")
    splits = [split_for_seed(data, "ranking", s) for s in range(max(MODES[m] for m in modes))]
    cfg = ModelConfig()  # He et al. defaults: 8 factors, the paper tower 32-16-8
    rows = []
    for device in devices:
        engines = [e for e in ENGINES if device == "cuda" or e not in CUDA_ONLY]
        for name in models:
            log(f"{name} on {device}: warming up {', '.join(e for e in engines if e not in CUDA_ONLY)}, then "
                f"reference, {len(modes) * len(engines)} engine runs and reference again per batch size")
            for engine in engines:  # warm-up: first-call costs (allocator, numba's kernel load, compilation)
                if engine not in CUDA_ONLY:
                    engine_samples_per_s(name, cfg, splits[:1], batch_sizes[0], device, **ENGINES[engine])
            for bs in batch_sizes:
                # The reference runs before and after the engines and counts as the mean of the two:
                # on a noisy machine the ratio then compares like with like.
                before = reference_samples_per_s(seeded_model(name, cfg, splits[0], 0, device), splits[0], bs,
                                                 device)
                measured = [(mode, engine, engine_samples_per_s(name, cfg, splits[:MODES[mode]], bs, device,
                                                                **ENGINES[engine]))
                            for mode in modes for engine in engines]
                after = reference_samples_per_s(seeded_model(name, cfg, splits[0], 0, device), splits[0], bs, device)
                ref = (before + after) / 2
                drift = max(before, after) / min(before, after)
                if drift > MAX_DRIFT:
                    log(f"WARNING: {name} {device} batch {bs}: the reference ran at {before:,.0f} samples/s before "
                        f"and {after:,.0f} after ({drift:.1f}x apart): the machine was busy, ratios are unreliable")
                for mode, engine, eng in measured:
                    rows.append({"model": name, "device": device, "batch_size": bs, "mode": mode,
                                 "engine": engine, "reference_samples_per_s": ref,
                                 "engine_samples_per_s": eng, "speedup": eng / ref,
                                 "engine_steps_per_s": eng / bs / MODES[mode],
                                 "reference_before": before, "reference_after": after,
                                 "reference_stable": drift <= MAX_DRIFT})
                    log(f"{name:6} {device:4} batch {bs:>6} {mode:9} {engine:11}: reference {ref:>11,.0f}"
                        f" ({before:,.0f} before, {after:,.0f} after)  engine {eng:>12,.0f} samples/s"
                        f"  ({eng / ref:.2f}x)")
    return pd.DataFrame(rows)


# The NVIDIA NCF benchmark's regime: NeuMF at 64 factors, MLP 256-256-128-64, MovieLens-20M tables,
# batch 2^20. Samples/s of the engine's training steps on pairs already on the device; no reference
# loop (a per-sample DataLoader at this batch size says nothing new).
LARGE = {"n_users": 138_493, "n_items": 26_744, "batch_size": 1 << 20}
LARGE_MODEL = ModelConfig(n_factors=64, mlp_layers=(256, 256, 128, 64))


def large_batch_samples_per_s(device: str, steps: int, **engine: bool) -> float:
    dev = torch.device(device)
    cfg = TrainConfig(task="ranking", batch_size=LARGE["batch_size"], **engine)
    with seeded_global_rng(0):
        model = build("neumf", LARGE_MODEL, LARGE["n_users"], LARGE["n_items"]).to(dev)
    gen = device_generator(dev, 0)
    n = (steps + 2) * cfg.batch_size
    u = torch.randint(LARGE["n_users"], (n,), generator=gen, device=dev)
    i = torch.randint(LARGE["n_items"], (n,), generator=gen, device=dev)
    y = torch.randint(2, (n,), generator=gen, device=dev).float()
    optimizers, forward = make_optimizer(model, cfg, dev), step_module(model, cfg, dev)
    warm = 2 * cfg.batch_size  # two warm-up steps (and compilation)
    train_steps(forward, optimizers, cfg, u[:warm], i[:warm], y[:warm])
    sync(device)
    start = time.perf_counter()
    train_steps(forward, optimizers, cfg, u[warm:], i[warm:], y[warm:])
    sync(device)
    return (n - warm) / (time.perf_counter() - start)


def measure_large(devices: tuple[str, ...], log=print) -> pd.DataFrame:
    rows = []
    for device in devices:
        for engine in (e for e in ENGINES if e != "sparse" and (device == "cuda" or e not in CUDA_ONLY)):
            eng = large_batch_samples_per_s(device, 20 if device == "cuda" else 2, **ENGINES[engine])
            rows.append({"model": "neumf-ml20m-64f", "device": device, "batch_size": LARGE["batch_size"],
                         "mode": "single", "engine": engine, "reference_samples_per_s": float("nan"),
                         "engine_samples_per_s": eng, "speedup": float("nan"),
                         "engine_steps_per_s": eng / LARGE["batch_size"]})
            log(f"neumf-ml20m-64f {device:4} batch {LARGE['batch_size']:>8} {engine:11}: "
                f"engine {eng:>14,.0f} samples/s")
    return pd.DataFrame(rows)


def speed_markdown(frame: pd.DataFrame, machine: str) -> str:
    def fmt(pattern: str):
        return lambda x: "—" if pd.isna(x) else pattern.format(x)

    table = frame.assign(
        reference_samples_per_s=frame["reference_samples_per_s"].map(fmt("{:,.0f}")),
        engine_samples_per_s=frame["engine_samples_per_s"].map(fmt("{:,.0f}")),
        speedup=frame["speedup"].map(fmt("{:.2f}×")),
        engine_steps_per_s=frame["engine_steps_per_s"].map(lambda x: f"{x:,.0f}" if x >= 10 else f"{x:.3g}"),
    )
    for column in ("reference_before", "reference_after"):
        if column in table:
            table[column] = table[column].map(fmt("{:,.0f}"))
    unstable = frame[frame["reference_stable"] == False] if "reference_stable" in frame else frame.iloc[:0]  # noqa: E712
    warning = ""
    if len(unstable):
        which = sorted({f"{r.model} {r.device} batch {r.batch_size}" for r in unstable.itertuples()})
        warning = (f"**Warning:** the reference's runs before and after the engines differ more than "
                   f"{MAX_DRIFT}× for {', '.join(which)}: the machine's load changed; rerun those.\n\n")
    return (f"# bench speed\n\nMachine: {machine}.\n\nTraining samples/s (positives + negatives) on "
            f"ML-1M-sized tables with the NCF default shapes, one epoch. `stacked10`: 10 seeds trained as one "
            f"stacked model, samples/s of all seeds together; the reference trains one model at a time, so "
            f"its rate (the mean of a run before and one after the engines) is the same for both modes. "
            f"Engines: `dense` is the paper's Adam; `sparse` updates only the batch's embedding rows, "
            f"with lazy Adam (a different optimizer); `graphs` compiles the step "
            f"with CUDA graphs, `graphs-bf16` adds bf16 autocast (CUDA only). `reference_before` and "
            f"`reference_after` are its two runs.\n\n" + warning
            + tabulate(table, headers="keys", tablefmt="github", showindex=False) + "\n")


def execute(args: argparse.Namespace) -> int:
    from bench.analysis.manifest import environment
    from bench.run.options import resolve_devices

    devices = resolve_devices(tuple(d.strip() for d in args.devices.split(",")) if args.devices else ("auto",))
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    log = lambda m: print(m, flush=True)  # noqa: E731
    frame = measure(devices, batch_sizes, tuple(args.models.split(",")) if args.models else tuple(MODELS),
                    tuple(args.modes.split(",")), log=log)
    if args.large:
        frame = pd.concat([frame, measure_large(devices, log=log)], ignore_index=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "speed.csv", index=False)
    env = environment()
    machine = ", ".join(f"{k}: {v}" for k, v in env["devices"].items()) + \
        f", {env['cpu_count']} CPUs, torch {env['versions']['torch']}, numba {env['versions']['numba'] or 'absent'}" \
        f", {env['torch_threads']} threads"
    (out / "speed.md").write_text(speed_markdown(frame, machine))
    print(f"wrote speed.csv and speed.md to {out}")
    return 0


def benchmark_table(args: argparse.Namespace) -> int:
    """pytest-benchmark JSON -> markdown: forward samples/s per device and the GPU/CPU speed-up."""
    import json

    source = Path(args.json)
    if not source.is_file():
        raise DataError(source, "file not found (write one with pytest tests/benchmarks --benchmark-json FILE)")
    rows = {}
    try:
        data = json.loads(source.read_bytes())
        for b in data["benchmarks"]:
            info = b["extra_info"]
            key = (info["model"], info["batch"])
            rows.setdefault(key, {})[info["device"]] = info["batch"] / b["stats"]["median"]
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise DataError(source, f"is not JSON ({str(err).splitlines()[0]})") from None
    except (KeyError, TypeError, ZeroDivisionError, AttributeError):
        raise DataError(source, "is not pytest-benchmark JSON from tests/benchmarks (benchmarks[].extra_info: "
                                "model, batch, device; stats.median)") from None

    def rate(d: dict[str, float], device: str) -> str:
        return f"{d[device]:,.0f}" if device in d else "—"

    table = [[m, f"{n:,}", rate(d, "cpu"), rate(d, "cuda"),
              f"{d['cuda'] / d['cpu']:.1f}×" if {"cpu", "cuda"} <= set(d) else "—"]
             for (m, n), d in sorted(rows.items())]
    machine = (data.get("machine_info") or {}).get("cpu", {}).get("brand_raw", "")
    text = (f"# Forward pass, samples/s (median)\n\nMachine: {machine}"
            f"\n\n" + tabulate(table, headers=["model", "batch", "CPU", "CUDA", "GPU/CPU"], tablefmt="github")
            + "\n")
    Path(args.out).write_text(text)
    print(text)
    return 0

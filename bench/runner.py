"""Expand a suite into trials, run the ones not yet stored, store each one as it finishes.

Trial = (data set, variant, device, seed, config). One seed fixes split, test negatives,
initialisation and data order for every variant, so comparisons are paired by seed.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bench.store import TrialStore, trial_key
from bench.suites import ANIME_SEED, VARIANTS, DataSpec, Suite, Variant, ncf_ranking, synthetic
from ncf_core import DataError, ModelConfig, TrainConfig
from ncf_core.baselines import BASELINES, fit_baseline
from ncf_core.config import with_overrides
from ncf_core.data import DATASETS, Split, available, load, resolve_path, split_for_seed
from ncf_core.data.interactions import Interactions
from ncf_core.evaluate import Evaluator
from ncf_core.models import neumf_from_pretrained
from ncf_core.train import Diverged, History, fit, fit_stacked, seeded_model

Log = Callable[[str], None]
Pretrained = dict[tuple[str, int], torch.nn.Module]  # (gmf | mlp, seed) -> trained model


@dataclass(frozen=True)
class RunOptions:
    data_dir: Path | None = None
    datasets: tuple[str, ...] | None = None
    variants: tuple[str, ...] | None = None
    seeds: int | None = None
    devices: tuple[str, ...] | None = None
    epochs: int | None = None
    params: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    stack: bool = True  # train a variant's seeds as one stacked model, in groups that fit memory


def present_devices() -> tuple[str, ...]:
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def resolve_devices(requested: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for name in requested:
        names = present_devices() if name == "auto" else (name,)
        for d in names:
            if d == "cuda" and not torch.cuda.is_available():
                raise DataError("--devices", "cuda requested but torch sees no CUDA device")
            if d not in ("cpu", "cuda"):
                raise DataError("--devices", f"unknown device {d!r} (cpu, cuda)")
            if d not in out:
                out.append(d)
    return tuple(out)


def spec_for(source: str, suite: Suite) -> DataSpec:
    """A data set named on the command line: the suite's own protocol for it, else its default."""
    for spec in suite.datasets:
        if source in (spec.source, spec.label):
            return spec
    if source == "anime":
        return ANIME_SEED
    if source == "synthetic":
        return synthetic("rating")
    if source in DATASETS:
        return ncf_ranking(source)
    resolved = resolve_path(source)
    if resolved is None:
        raise DataError(source, "neither a registered data set nor an existing folder or NCF prefix")
    kind, _ = resolved
    if kind == "anime":
        return replace(ANIME_SEED, source=source, fallback=None)
    return ncf_ranking(source)


def resolve_datasets(suite: Suite, opts: RunOptions, log: Log) -> list[tuple[DataSpec, Interactions | Split]]:
    """Load each data set once; a missing registered set falls back to synthetic or is skipped."""
    # A set named on the command line must exist; only a suite's own sets fall back to synthetic.
    specs = ([replace(spec_for(s, suite), fallback=None) for s in opts.datasets] if opts.datasets
             else list(suite.datasets))
    loaded = []
    for spec in specs:
        if spec.source in DATASETS and not available(spec.source, opts.data_dir):
            if opts.datasets:
                raise DataError(Path(opts.data_dir or ".") / (DATASETS[spec.source].folder or ""),
                                f"data set {spec.source!r} not found")
            if spec.fallback is None:
                log(f"skipping {spec.source}: not found under {opts.data_dir}")
                continue
            log(f"{spec.source} not found under {opts.data_dir}: using {spec.fallback} ({spec.task}) instead")
            spec = synthetic(spec.task, n_users=1000, n_items=400, epochs=spec.train.epochs)
        if opts.epochs is not None:
            spec = replace(spec, train=replace(spec.train, epochs=opts.epochs))
        data = load(spec.source, data_dir=opts.data_dir, task=spec.task, **dict(spec.options))
        loaded.append((spec, data))
    if not loaded:
        raise DataError(opts.data_dir or "--data-dir", "no data set of the suite was found")
    return loaded


def variant_configs(spec: DataSpec, variant: Variant,
                    params: dict[str, dict[str, dict[str, Any]]]) -> tuple[ModelConfig, TrainConfig]:
    """The spec's configs, tuned overrides for this variant (``--params``), then the variant's own."""
    model, train = spec.model, spec.train
    tuned = params.get(variant.name, {})
    if tuned.get("dataset", spec.label) != spec.label or tuned.get("task", spec.task) != spec.task:
        tuned = {}  # tuned for another data set or task
    try:
        model = with_overrides(model, tuned.get("model", {}))
        train = with_overrides(train, {k: v for k, v in tuned.get("train", {}).items() if k != "epochs"})
        if variant.pretrained:
            train = replace(train, optimizer=variant.optimizer)
    except ValueError as err:
        raise DataError("--params", f"{variant.name} on {spec.label}: {err}") from None
    return model, train


def _record(spec: DataSpec, variant: str, device: str, seed: int, **fields: Any) -> dict[str, Any]:
    return {"dataset": spec.label, "task": spec.task, "variant": variant, "device": device,
            "seed": seed, **fields}


class Runner:
    def __init__(self, suite: Suite, opts: RunOptions, out_dir: Path, log: Log = print) -> None:
        self.suite, self.opts, self.log = suite, opts, log
        self.store = TrialStore(out_dir)
        self.variants = opts.variants or suite.variants
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise DataError("--variants", f"unknown variants {unknown}; known: {list(VARIANTS)}")
        self.seeds = list(range(opts.seeds if opts.seeds is not None else suite.seeds))
        self.devices = resolve_devices(opts.devices or suite.devices)
        self.stacked_groups: dict[str, list[int]] = {}  # data set -> sizes of its seed groups

    def stacking_note(self) -> dict[str, str]:
        """Per data set, how its seeds were trained (written to the manifest)."""
        if not self.opts.stack:
            return {label: "one seed at a time (--no-stack)" for label in self.stacked_groups}
        return {label: (f"seeds in stacked groups of {sorted(set(sizes), reverse=True)} per variant and device "
                        "(ncf_core.train.fit_stacked: same batches, negatives and selection per seed as alone; "
                        "samples/s per trial are per seed, over the shared wall clock)")
                for label, sizes in self.stacked_groups.items()}

    def seed_groups(self, spec: DataSpec, data: Interactions | Split, seeds: list[int]) -> list[list[int]]:
        """All pending seeds as one stacked group, or as many as fit a quarter of the smallest memory
        among the run's devices (an epoch's pairs cost ~64 bytes a seed: ids, target, their shuffled
        and stacked copies). Without stacking, one seed at a time, so one split is in memory."""
        if not self.opts.stack:
            return [[s] for s in seeds]
        rows = len(data.train) if isinstance(data, Split) else len(data)
        pairs = rows * (1 + spec.train.n_negatives if spec.task == "ranking" else 1)
        size = int(max(1, min(len(seeds), memory_budget(self.devices) // (64 * pairs))))
        return [seeds[k:k + size] for k in range(0, len(seeds), size)]

    def plan(self, specs: list[tuple[DataSpec, Any]]) -> list[dict[str, Any]]:
        trials = []
        for spec, _ in specs:
            for seed in self.seeds:
                for device in self.devices:
                    trials += [_record(spec, v, device, seed) for v in self.variants]
                if self.suite.baselines:
                    trials += [_record(spec, f"baseline-{b}", "cpu", seed) for b in BASELINES[spec.task]]
        return trials

    def run(self) -> list[dict[str, Any]]:
        """Run every pending trial; returns the records of this call (failed ones included)."""
        specs = resolve_datasets(self.suite, self.opts, self.log)
        plan = self.plan(specs)
        done = self.store.finished()
        pending = {trial_key(t) for t in plan} - done
        if len(done & {trial_key(t) for t in plan}):
            self.log(f"resuming: {len(plan) - len(pending)} of {len(plan)} trials already stored")
        results: list[dict[str, Any]] = []
        bar = tqdm(total=len(plan), initial=len(plan) - len(pending), unit="trial", dynamic_ncols=True)
        try:
            for spec, data in specs:
                mine = [t for t in plan if (t["dataset"], t["task"]) == (spec.label, spec.task)
                        and trial_key(t) in pending]
                groups = self.seed_groups(spec, data, sorted({t["seed"] for t in mine}))
                if groups:
                    self.stacked_groups[spec.label] = [len(g) for g in groups]
                for group in groups:
                    splits = {s: split_for_seed(data, spec.task, s, spec.n_eval_negatives) for s in group}
                    for record in self._run_group(spec, splits, [t for t in mine if t["seed"] in group]):
                        self.store.append(record)
                        results.append(record)
                        bar.update()
                        bar.write(_one_line(record))
        finally:
            bar.close()
        return results

    def _run_group(self, spec: DataSpec, splits: dict[int, Split], trials: list[dict[str, Any]]):
        for device in self.devices:
            pretrained: Pretrained = {}
            for name in self.variants:
                seeds = [t["seed"] for t in trials if (t["device"], t["variant"]) == (device, name)]
                if seeds:
                    yield from self._trials(spec, splits, seeds, device, VARIANTS[name], pretrained)
        for t in (t for t in trials if t["variant"].startswith("baseline-")):
            yield self._baseline(spec, splits[t["seed"]], t["seed"], t["variant"])

    def _trials(self, spec: DataSpec, splits: dict[int, Split], seeds: list[int], device: str,
                variant: Variant, pretrained: Pretrained) -> list[dict[str, Any]]:
        """One variant on one device for ``seeds``: trained together, one record per seed."""
        model_cfg, train_cfg = variant_configs(spec, variant, self.opts.params)
        config = {"model": asdict(model_cfg), "train": asdict(train_cfg), "data": _data_config(spec),
                  "variant": asdict(variant)}
        started = time.time()
        try:
            if variant.pretrained:
                models = self._pretrained_neumfs(spec, splits, seeds, device, model_cfg, pretrained)
            else:
                models = [seeded_model(variant.model, model_cfg, splits[s], s, device, train_cfg.sparse)
                          for s in seeds]
            outcomes, stacked = self._fit(models, [splits[s] for s in seeds], train_cfg, device, seeds)
        except Exception as err:  # recorded as failed; the suite goes on
            return [_failed(spec, variant.name, device, s, err, config, started) for s in seeds]
        records = []
        config = {**config, "engine": {"stacked_seeds": stacked}}
        for seed, model, outcome in zip(seeds, models, outcomes):
            if isinstance(outcome, Exception):
                records.append(_failed(spec, variant.name, device, seed, outcome, config, started))
                continue
            if variant.name in ("gmf", "mlp"):
                pretrained[(variant.name, seed)] = model
                self.store.save_checkpoint(_ckpt(spec, device, seed, variant.name), model.state_dict())
            try:
                evaluation = Evaluator(splits[seed], "test", device, k=train_cfg.k).evaluate(model)
            except Exception as err:
                records.append(_failed(spec, variant.name, device, seed, err, config, started))
                continue
            records.append(_record(
                spec, variant.name, device, seed, status="ok", epochs=len(outcome.epochs),
                best_epoch=outcome.best_epoch, train_seconds=outcome.train_seconds,
                train_samples_per_s=outcome.train_samples_per_s, stacked_seeds=stacked,
                infer_samples_per_s=evaluation.samples_per_s, wall_seconds=time.time() - started,
                metrics=evaluation.metrics, history=[asdict(e) for e in outcome.epochs], config=config,
            ))
        return records

    def _fit(self, models: list[torch.nn.Module], splits: list[Split], cfg: TrainConfig, device: str,
             seeds: list[int]) -> tuple[list[History | Exception], int]:
        """Stacked when there are several seeds with training sets of one size; else one by one."""
        if len(models) > 1 and len({len(sp.train) for sp in splits}) == 1:
            return list(fit_stacked(models, splits, cfg, device, seeds=seeds)), len(models)
        outcomes: list[History | Exception] = []
        for model, split, seed in zip(models, splits, seeds):
            try:
                outcomes.append(fit(model, split, cfg, device, seed=seed))
            except Diverged as err:
                outcomes.append(err)
        return outcomes, 1

    def _pretrained_neumfs(self, spec: DataSpec, splits: dict[int, Split], seeds: list[int], device: str,
                           cfg: ModelConfig, pretrained: Pretrained) -> list[torch.nn.Module]:
        """NeuMF per seed from that seed's GMF and MLP: from memory, from checkpoints, or trained now."""
        cfgs = {}
        for name in ("gmf", "mlp"):
            base_cfg, base_train = variant_configs(spec, VARIANTS[name], self.opts.params)
            cfgs[name] = base_cfg
            missing = []
            for seed in (s for s in seeds if (name, s) not in pretrained):
                model = seeded_model(name, base_cfg, splits[seed], seed, device, base_train.sparse)
                state = self.store.load_checkpoint(_ckpt(spec, device, seed, name))
                if state is None:
                    missing.append((seed, model))
                else:
                    model.load_state_dict(state)
                    pretrained[(name, seed)] = model
            if missing:
                outcomes, _ = self._fit([m for _, m in missing], [splits[s] for s, _ in missing], base_train,
                                        device, [s for s, _ in missing])
                for (seed, model), outcome in zip(missing, outcomes):
                    if isinstance(outcome, Exception):
                        raise RuntimeError(f"pretraining {name} for seed {seed}: {outcome}")
                    self.store.save_checkpoint(_ckpt(spec, device, seed, name), model.state_dict())
                    pretrained[(name, seed)] = model
        # NeuMF takes the shapes of the GMF and MLP it is built from (they may have been tuned apart).
        cfg = replace(cfg, n_factors=cfgs["gmf"].n_factors, mlp_layers=cfgs["mlp"].mlp_layers,
                      use_item_features=cfgs["gmf"].use_item_features or cfgs["mlp"].use_item_features)
        return [pretrained_neumf(pretrained[("gmf", s)], pretrained[("mlp", s)], cfg, splits[s]).to(device)
                for s in seeds]

    def _baseline(self, spec: DataSpec, split: Split, seed: int, variant: str) -> dict[str, Any]:
        started = time.time()
        model = fit_baseline(variant.removeprefix("baseline-"), split.train)
        evaluation = Evaluator(split, "test", "cpu", k=spec.train.k).evaluate(model)
        return _record(spec, variant, "cpu", seed, status="ok", epochs=0, best_epoch=0,
                       train_seconds=0.0, infer_samples_per_s=evaluation.samples_per_s,
                       wall_seconds=time.time() - started, metrics=evaluation.metrics,
                       config={"data": _data_config(spec)})


def pretrained_neumf(gmf: torch.nn.Module, mlp: torch.nn.Module, cfg: ModelConfig, split: Split) -> torch.nn.Module:
    feats = split.train.item_features
    feats_t = None if feats is None else torch.from_numpy(feats)
    return neumf_from_pretrained(gmf, mlp, cfg, split.n_users, split.n_items, feats_t)


def memory_budget(devices: tuple[str, ...]) -> int:
    """A quarter of the smallest memory among ``devices`` (host RAM, GPU memory), in bytes."""
    try:
        sizes = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): assume a modest 16 GiB
        sizes = [16 << 30]
    if "cuda" in devices:
        sizes.append(torch.cuda.get_device_properties(0).total_memory)
    return min(sizes) // 4


def _failed(spec: DataSpec, variant: str, device: str, seed: int, err: Exception, config: dict[str, Any],
            started: float) -> dict[str, Any]:
    status = "diverged" if isinstance(err, Diverged) else "failed"
    trace = "".join(traceback.format_exception(err, limit=3))
    return _record(spec, variant, device, seed, status=status, error=f"{type(err).__name__}: {err}",
                   config=config, traceback=trace, wall_seconds=time.time() - started)


def _ckpt(spec: DataSpec, device: str, seed: int, name: str) -> str:
    return f"{spec.label}-{spec.task}-{device}-seed{seed}-{name}"


def _data_config(spec: DataSpec) -> dict[str, Any]:
    return {"source": spec.source, "task": spec.task, "options": dict(spec.options),
            "n_eval_negatives": spec.n_eval_negatives}


def _one_line(r: dict[str, Any]) -> str:
    head = f"{r['dataset']}/{r['task']} {r['variant']:<24} {r['device']:<4} seed {r['seed']:<2}"
    if r["status"] != "ok":
        return f"{head} {r['status'].upper()}: {r.get('error', '')}"
    m = "  ".join(f"{k}={v:.4f}" for k, v in r["metrics"].items() if not k.startswith("full_"))
    speed = f"{r.get('train_samples_per_s', 0) or 0:,.0f} samples/s" if r.get("epochs") else "baseline"
    if (r.get("stacked_seeds") or 1) > 1:
        speed += f" per seed, {r['stacked_seeds']} stacked"
    return f"{head} {m}  ({r['wall_seconds']:.1f}s, {speed})"

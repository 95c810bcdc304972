"""Expand a suite into trials, run the ones not yet stored, store each one as it finishes.

Trial = (data set, variant, device, seed, config). One seed fixes split, test negatives,
initialisation and data order for every variant, so comparisons are paired by seed.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bench.params import TunedParams
from bench.pool import threads_per_job
from bench.pretrain import PretrainCache, pretrained_neumf
from bench.store import TrialStore, trial_key
from bench.suites import VARIANTS, DataSpec, Suite, Variant, default_spec, synthetic
from ncf_core import DataError, ModelConfig, TrainConfig
from ncf_core.baselines import fit_baseline
from ncf_core.config import with_overrides
from ncf_core.data import DATASETS, Split, available, load, resolve_path, split_for_seed
from ncf_core.data.interactions import Interactions
from ncf_core.data.splits import refit_split
from ncf_core.evaluate import Evaluator
from ncf_core.tasks import task_of
from ncf_core.train import Diverged, History, fit, fit_stacked, seeded_model

Log = Callable[[str], None]


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
    tune: int | None = None  # equal Optuna budget per (data set, variant) before the seeds; None: the suite's
    stack: bool = True  # train a variant's seeds as one stacked model, in groups that fit memory
    jobs: int | None = None  # worker processes for studies and units; None: one per core on a CPU-only run
    strict_files: bool = False  # a published split's quirks are errors instead of read as its reference reads them

    def __post_init__(self) -> None:
        for name in ("seeds", "epochs", "jobs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise DataError(f"--{name}", f"must be a whole number >= 1, not {value!r}")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise DataError(self.data_dir, "data directory not found")


def cpu_cores() -> int:
    """The cores this process may use (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


def kind_of(source: str) -> str:
    """What a source holds: a registered set's name, or "ncf" for the paper's files."""
    if source in DATASETS:
        return source
    resolved = resolve_path(source)
    if resolved is None:
        raise DataError(source, "neither a registered data set nor an existing folder or NCF prefix")
    return resolved[0]


def spec_for(source: str, suite: Suite) -> DataSpec:
    """A data set named on the command line, by name or path, under the suite's protocol for its kind:
    the suite's own spec for that kind, else its kind's default with the suite's model and training
    settings for that task (a path to ML-1M files in ``full`` runs at 64 factors; in ``smoke``, a
    smoke run's epochs, whatever the data)."""
    kind = kind_of(source)
    own = next((s for s in suite.datasets if s.source == kind and s.stands_in_for is None), None)
    if own is not None:
        return replace(own, source=source, fallback=None)
    base = default_spec(kind)
    template = next((s for s in suite.datasets if s.task == base.task), None)
    if template is not None:
        base = replace(base, model=template.model, train=template.train, refit=template.refit)
    return replace(base, source=source, fallback=None)


def unique_labels(specs: list[DataSpec]) -> list[DataSpec]:
    """Give data sets whose paths end alike (``a/p`` and ``b/p``) labels that tell them apart;
    the same data set twice is an error, not two sets of trials under one name."""
    seen: dict[tuple[str, str], str] = {}
    for spec in specs:
        where = str(Path(spec.source).resolve()) if spec.source not in DATASETS else spec.source
        if (where, spec.task) in seen:
            raise DataError("--datasets", f"{spec.source} is given twice")
        seen[(where, spec.task)] = spec.source
    out = list(specs)
    for depth in range(2, 64):
        labels = [(s.label, s.task) for s in out]
        clashes = {i for i, lab in enumerate(labels) if labels.count(lab) > 1}
        if not clashes:
            return out
        for i in clashes:
            parts = Path(out[i].source).resolve().parts if out[i].source not in DATASETS else (out[i].source,)
            out[i] = replace(out[i], name="/".join(parts[-depth:]).lstrip("/") or out[i].source)
    raise DataError("--datasets", "cannot tell the data sets apart by their paths")


def resolve_datasets(suite: Suite, opts: RunOptions, log: Log) -> list[tuple[DataSpec, Interactions | Split]]:
    """Load each data set once. A suite's own set that is missing is replaced by synthetic data of
    its task, labelled as a stand-in (``synthetic-for-<set>``) and announced; a set named on the
    command line must exist."""
    specs = [spec_for(s, suite) for s in opts.datasets] if opts.datasets else list(suite.datasets)
    loaded = []
    for spec in unique_labels(specs):
        if spec.source in DATASETS and not available(spec.source, opts.data_dir):
            if opts.datasets:
                raise DataError(Path(opts.data_dir or ".") / (DATASETS[spec.source].folder or ""),
                                f"data set {spec.source!r} not found")
            where = opts.data_dir or "no --data-dir"
            if spec.fallback is None:
                log(f"skipping {spec.source}: not found under {where}")
                continue
            log(f"STAND-IN: {spec.source} not found under {where}; synthetic {spec.task} data runs in its "
                f"place, labelled synthetic-for-{spec.source}")
            spec = replace(synthetic(spec.task, n_users=1000, n_items=400, epochs=spec.train.epochs),
                           name=f"synthetic-for-{spec.source}", stands_in_for=spec.source)
        if opts.epochs is not None:
            spec = replace(spec, train=replace(spec.train, epochs=opts.epochs), epochs_fixed=True)
        if opts.refit is not None:
            spec = replace(spec, refit=opts.refit)
        if opts.all_rows and "max_rows" in dict(spec.options):
            spec = replace(spec, options=tuple(o for o in spec.options if o[0] != "max_rows"),
                           name=f"{spec.label}-all-rows")
        data = load(spec.source, data_dir=opts.data_dir, task=spec.task, strict=opts.strict_files,
                    **dict(spec.options))
        if isinstance(data, Split):  # the paper's files: their negatives are what the record says
            spec = replace(spec, n_eval_negatives=int(data.test_negatives.shape[1]),
                           anomalies=tuple(a.line() for a in data.anomalies))
            for line in spec.anomalies:
                log(f"{spec.label}: {line}")
        loaded.append((spec, data))
    if not loaded:
        raise DataError(opts.data_dir or "--data-dir", "no data set of the suite was found")
    return loaded


def variant_configs(spec: DataSpec, variant: Variant, params: TunedParams) -> tuple[ModelConfig, TrainConfig]:
    """The spec's configs, tuned overrides for this variant on this data set (``--params``), then the
    variant's own. A pretrained NeuMF takes the shapes of the GMF and MLP it starts from."""
    model, train = _configs(spec, variant.name, params)
    if variant.pretrained:
        train = replace(train, optimizer=variant.optimizer)
        (gmf, _), (mlp, _) = (_configs(spec, name, params) for name in ("gmf", "mlp"))
        model = replace(model, n_factors=gmf.n_factors, mlp_layers=mlp.mlp_layers, dropout=mlp.dropout,
                        use_item_features=gmf.use_item_features or mlp.use_item_features)
    return model, train


def _configs(spec: DataSpec, name: str, params: TunedParams) -> tuple[ModelConfig, TrainConfig]:
    try:
        return overridden(spec, spec.model, spec.train, params.for_variant(name, spec.label, spec.task))
    except (ValueError, TypeError) as err:
        raise DataError("--params", f"{name} on {spec.label}: {err}") from None


def overridden(spec: DataSpec, model: ModelConfig, train: TrainConfig,
               tuned: dict[str, dict[str, Any]]) -> tuple[ModelConfig, TrainConfig]:
    """Configs with tuned or preset settings applied; an epoch count set by --epochs stays."""
    train_overrides = {k: v for k, v in tuned.get("train", {}).items() if not (spec.epochs_fixed and k == "epochs")}
    return with_overrides(model, tuned.get("model", {})), with_overrides(train, train_overrides)


def trial_config(spec: DataSpec, variant: Variant | None, params: TunedParams) -> dict[str, Any]:
    """The full config written next to a trial's result (a baseline has only its data)."""
    if variant is None:
        return {"data": _data_config(spec)}
    model_cfg, train_cfg = variant_configs(spec, variant, params)
    return {"model": asdict(model_cfg), "train": asdict(train_cfg), "data": _data_config(spec),
            "variant": asdict(variant)}


def config_difference(stored: dict[str, Any], planned: dict[str, Any]) -> str | None:
    """The first setting in which a stored trial differs from what this run would train, if any."""
    planned = json.loads(json.dumps(planned, default=list))
    for part in ("model", "train", "variant", "data"):
        a, b = stored.get(part) or {}, planned.get(part) or {}
        for key in sorted(set(a) | set(b)):
            if key == "source":
                continue  # the same files, perhaps named from another folder
            if a.get(key) != b.get(key):
                return f"{part}.{key} = {a.get(key)!r} (this run: {b.get(key)!r})"
    return None


def _record(spec: DataSpec, variant: str, device: str, seed: int, **fields: Any) -> dict[str, Any]:
    return {"dataset": spec.label, "task": spec.task, "variant": variant, "device": device,
            "seed": seed, **fields}


Tuner = Callable[..., tuple[TunedParams, dict[str, Any]]]  # bench.tune.tune_suite


@dataclass(frozen=True)
class Unit:
    """One piece of work: a variant on a device for some seeds of one data set's seed group."""

    dataset: int  # index into the run's data sets
    group: tuple[int, ...]  # the seed group (trained stacked)
    device: str
    variant: str
    seeds: tuple[int, ...]  # its pending seeds


class Runner:
    def __init__(self, suite: Suite, opts: RunOptions, out_dir: Path, log: Log = print,
                 tuner: Tuner | None = None, executor: Any = None) -> None:
        from bench.executors import LocalExecutor, PoolExecutor

        self.suite, self.opts, self.log, self.tuner = suite, opts, log, tuner
        self.devices = resolve_devices(opts.devices or suite.devices)
        self.jobs = opts.jobs or (cpu_cores() if self.devices == ("cpu",) else 1)
        self.threads = threads_per_job(self.jobs, torch.get_num_threads())
        self.opts = replace(self.opts, jobs=self.jobs)
        if executor is None:
            executor = PoolExecutor(self.jobs, self.threads) if self.jobs > 1 else LocalExecutor()
        self.executor = executor
        self.budget = opts.tune if opts.tune is not None else suite.tune
        if self.budget and tuner is None:
            raise ValueError("a tuned run needs a tuner (bench.tune.tune_suite)")
        if self.budget and opts.params:
            raise DataError("--tune", "tunes every variant itself: leave out --params")
        self.tuning: dict[str, Any] = {}
        self.store = TrialStore(out_dir)
        self.variants = opts.variants or suite.variants
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise DataError("--variants", f"unknown variants {unknown}; known: {list(VARIANTS)}")
        self.seeds = list(range(opts.seeds if opts.seeds is not None else suite.seeds))
        self.stacked_groups: dict[str, list[int]] = {}  # data set -> sizes of its seed groups
        self.pretrain = PretrainCache(self.store.checkpoints)
        self._group: tuple | None = None
        self._splits: dict[int, Split] = {}

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
        size = int(max(1, min(len(seeds), memory_budget(self.devices) // (64 * training_pairs(spec, data)))))
        return [seeds[k:k + size] for k in range(0, len(seeds), size)]

    def plan(self, specs: list[tuple[DataSpec, Any]]) -> list[dict[str, Any]]:
        trials = []
        for spec, _ in specs:
            for seed in self.seeds:
                for device in self.devices:
                    trials += [_record(spec, v, device, seed) for v in self.variants]
                if self.suite.baselines:
                    trials += [_record(spec, f"baseline-{b}", "cpu", seed) for b in task_of(spec.task).baselines]
        return trials

    def planned_config(self, spec: DataSpec, variant: str) -> dict[str, Any]:
        config = trial_config(spec, VARIANTS.get(variant), self.opts.params)
        if self.tuning and variant in VARIANTS:
            config["tuning"] = {k: self.tuning[k] for k in ("budget", "sampler", "pruner", "split_seed")}
        return config

    def run(self) -> list[dict[str, Any]]:
        """Run every pending trial; returns the records of this call (failed ones included).

        The run folder is locked for the whole call: a second ``bench run`` on it stops at once.
        """
        specs = resolve_datasets(self.suite, self.opts, self.log)
        self.specs = specs
        with self.store.locked():
            dropped = self.store.repair()
            if dropped:
                self.log(f"warning: {self.store.path}: dropped a torn last line ({dropped} bytes) left by a crash; "
                         "its trial runs again")
            if self.budget:
                tuned, self.tuning = self.tuner(specs, tuple(self.variants), self.budget,
                                                self.store.run_dir / "tuning", device=self.devices[0], log=self.log,
                                                jobs=self.jobs, threads=self.threads)
                self.opts = replace(self.opts, params=tuned)
            return self._run(specs)

    def _run(self, specs: list[tuple[DataSpec, Any]]) -> list[dict[str, Any]]:
        plan = self.plan(specs)
        stored = {trial_key(r): r for r in self.store.records()}
        if self.store.skipped:
            self.log(f"warning: {self.store.path}: skipped unreadable line(s) {self.store.skipped[:10]}")
        by_key = {trial_key(t): spec for spec, _ in specs for t in plan
                  if (t["dataset"], t["task"]) == (spec.label, spec.task)}
        for key, spec in by_key.items():
            record = stored.get(key)
            if record is None or record.get("status") != "ok":
                continue
            diff = config_difference(record.get("config") or {}, self.planned_config(spec, key[2]))
            if diff is not None:
                raise DataError(self.store.path, f"{key[2]} on {key[0]} seed {key[4]} was run with {diff}; "
                                                 "use another --out, or the settings it was run with")
        done = {k for k, r in stored.items() if r.get("status") == "ok"}
        pending = {trial_key(t) for t in plan} - done
        if len(done & {trial_key(t) for t in plan}):
            self.log(f"resuming: {len(plan) - len(pending)} of {len(plan)} trials already stored")
        results: list[dict[str, Any]] = []
        units = self.units(specs, [t for t in plan if trial_key(t) in pending])
        bar = tqdm(total=len(plan), initial=len(plan) - len(pending), unit="trial", dynamic_ncols=True)
        try:
            for record in self.executor.execute(self, specs, units):
                self.store.append(record)  # the driver is the store's only writer, whatever computed it
                results.append(record)
                bar.update()
                bar.write(_one_line(record))
        finally:
            bar.close()
        return results

    def units(self, specs: list[tuple[DataSpec, Any]], pending: list[dict[str, Any]]) -> list[Unit]:
        """The work, in dependency order: per data set and seed group, each device's variants (GMF and
        MLP before the pretrained NeuMFs that start from them), then the group's baselines."""
        units: list[Unit] = []
        order = sorted(self.variants, key=lambda v: VARIANTS[v].pretrained)
        for index, (spec, data) in enumerate(specs):
            mine = [t for t in pending if (t["dataset"], t["task"]) == (spec.label, spec.task)]
            groups = self.seed_groups(spec, data, sorted({t["seed"] for t in mine}))
            if groups:
                self.stacked_groups[spec.label] = [len(g) for g in groups]
            for group in groups:
                for device in self.devices:
                    for name in order:
                        seeds = tuple(t["seed"] for t in mine if t["seed"] in group
                                      and (t["device"], t["variant"]) == (device, name))
                        if seeds:
                            units.append(Unit(index, tuple(group), device, name, seeds))
                for t in mine:
                    if t["seed"] in group and t["variant"].startswith("baseline-"):
                        units.append(Unit(index, tuple(group), "cpu", t["variant"], (t["seed"],)))
        return units

    def compute(self, spec: DataSpec, data: Any, unit: Unit) -> list[dict[str, Any]]:
        """One unit's records (what an executor runs, in this process or in a worker)."""
        if self._group != (unit.dataset, unit.group):  # a new seed group: drop the last one's splits and models
            self._group, self._splits = (unit.dataset, unit.group), {}
            self.pretrain.memory.clear()
        for s in unit.seeds:
            if s not in self._splits:
                self._splits[s] = split_for(spec, data, s)
        splits = {s: self._splits[s] for s in unit.seeds}
        if unit.variant.startswith("baseline-"):
            return [self._baseline(spec, splits[s], s, unit.variant) for s in unit.seeds]
        return self._trials(spec, splits, list(unit.seeds), unit.device, VARIANTS[unit.variant])

    def _trials(self, spec: DataSpec, splits: dict[int, Split], seeds: list[int], device: str,
                variant: Variant) -> list[dict[str, Any]]:
        """One variant on one device for ``seeds``: trained together, one record per seed."""
        model_cfg, train_cfg = variant_configs(spec, variant, self.opts.params)
        config = self.planned_config(spec, variant.name)
        started = time.time()
        try:
            if variant.pretrained:
                models = self._pretrained_neumfs(spec, splits, seeds, device, model_cfg, train_cfg.sparse)
            else:
                models = [seeded_model(variant.model, model_cfg, splits[s], s, device, train_cfg.sparse)
                          for s in seeds]
            outcomes, stacked = fit_group(models, [splits[s] for s in seeds], train_cfg, device, seeds)
        except Exception as err:  # recorded as failed; the suite goes on
            return [_failed(spec, variant.name, device, s, err, config, started) for s in seeds]
        config = {**config, "engine": {"stacked_seeds": stacked}}
        if variant.name in ("gmf", "mlp"):  # NeuMF starts from these (trained on training data only)
            for seed, model, outcome in zip(seeds, models, outcomes):
                if not isinstance(outcome, Exception):
                    self.pretrain.put(PretrainCache.key(spec.label, spec.task, device, seed, variant.name,
                                                        model_cfg, train_cfg), model)
        refits: dict[int, tuple[torch.nn.Module, History | Exception]] = {}
        if spec.refit:
            try:
                refits = self._refit(spec, splits, seeds, device, variant, model_cfg, train_cfg, outcomes)
            except Exception as err:
                return [_failed(spec, variant.name, device, s, err, config, started) for s in seeds]
        records = []
        for seed, model, outcome in zip(seeds, models, outcomes):
            extra: dict[str, Any] = {}
            if seed in refits:
                model, refit = refits[seed]
                if isinstance(refit, Exception):
                    outcome = refit
                else:
                    extra = {"refit": {"epochs": len(refit.epochs), "train_rows": len(refit_split(splits[seed]).train),
                                       "train_seconds": refit.train_seconds}}
            if isinstance(outcome, Exception):
                records.append(_failed(spec, variant.name, device, seed, outcome, config, started))
                continue
            try:
                evaluation = Evaluator(splits[seed], "test", device, k=train_cfg.k).evaluate(model)
            except Exception as err:
                records.append(_failed(spec, variant.name, device, seed, err, config, started))
                continue
            records.append(_record(
                spec, variant.name, device, seed, status="ok", epochs=len(outcome.epochs),
                best_epoch=outcome.best_epoch, train_seconds=outcome.train_seconds,
                train_samples_per_s=outcome.train_samples_per_s, stacked_seeds=stacked,
                threads=torch.get_num_threads(), jobs=self.jobs,
                infer_samples_per_s=evaluation.samples_per_s, wall_seconds=time.time() - started,
                metrics=evaluation.metrics, history=[asdict(e) for e in outcome.epochs], config=config, **extra,
            ))
        return records

    def _refit(self, spec: DataSpec, splits: dict[int, Split], seeds: list[int], device: str, variant: Variant,
               model_cfg: ModelConfig, train_cfg: TrainConfig, outcomes: list[History | Exception],
               ) -> dict[int, tuple[torch.nn.Module, History | Exception]]:
        """Each seed again from the same initialisation, on training + validation data, for the number
        of epochs its validation chose; the test split is then read once, by the caller."""
        chosen = {s: o.best_epoch for s, o in zip(seeds, outcomes) if not isinstance(o, Exception)}
        out: dict[int, tuple[torch.nn.Module, History | Exception]] = {}
        for epochs in sorted(set(chosen.values())):
            group = [s for s in seeds if chosen.get(s) == epochs]
            whole = {s: refit_split(splits[s]) for s in group}
            if variant.pretrained:
                models = self._pretrained_neumfs(spec, splits, group, device, model_cfg, train_cfg.sparse)
            else:
                models = [seeded_model(variant.model, model_cfg, whole[s], s, device, train_cfg.sparse) for s in group]
            cfg = replace(train_cfg, epochs=epochs, patience=None)
            results, _ = fit_group(models, [whole[s] for s in group], cfg, device, group, select=False)
            out.update({s: (m, r) for s, m, r in zip(group, models, results)})
        return out

    def _pretrained_neumfs(self, spec: DataSpec, splits: dict[int, Split], seeds: list[int], device: str,
                           cfg: ModelConfig, sparse: bool) -> list[torch.nn.Module]:
        """NeuMF per seed from that seed's GMF and MLP, trained with their own (tuned) settings."""
        base = {}
        for name in ("gmf", "mlp"):
            base_cfg, base_train = variant_configs(spec, VARIANTS[name], self.opts.params)
            base[name] = self.pretrain.models(name, spec.label, spec.task, splits, seeds, device, base_cfg,
                                              base_train, lambda *a: fit_group(*a)[0])
        return [pretrained_neumf(base["gmf"][s], base["mlp"][s], cfg, splits[s], sparse).to(device) for s in seeds]

    def _baseline(self, spec: DataSpec, split: Split, seed: int, variant: str) -> dict[str, Any]:
        started = time.time()
        model = fit_baseline(variant.removeprefix("baseline-"), split.train)
        evaluation = Evaluator(split, "test", "cpu", k=spec.train.k).evaluate(model)
        return _record(spec, variant, "cpu", seed, status="ok", epochs=0, best_epoch=0,
                       train_seconds=0.0, infer_samples_per_s=evaluation.samples_per_s,
                       wall_seconds=time.time() - started, metrics=evaluation.metrics,
                       config=self.planned_config(spec, variant))


def fit_group(models: list[torch.nn.Module], splits: list[Split], cfg: TrainConfig, device: str,
              seeds: list[int], select: bool = True) -> tuple[list[History | Exception], int]:
    """Stacked when there are several seeds with training sets of one size, else one by one; a
    diverged seed is an outcome, not an exception. Returns the outcomes and the stack size."""
    if len(models) > 1 and len({len(sp.train) for sp in splits}) == 1:
        return list(fit_stacked(models, splits, cfg, device, seeds=seeds, select=select)), len(models)
    outcomes: list[History | Exception] = []
    for model, split, seed in zip(models, splits, seeds):
        try:
            outcomes.append(fit(model, split, cfg, device, seed=seed, select=select))
        except Diverged as err:
            outcomes.append(err)
    return outcomes, 1


def training_pairs(spec: DataSpec, data: Interactions | Split) -> int:
    """Examples in one epoch at the protocol's defaults: a size to schedule and budget memory by."""
    rows = len(data.train) if isinstance(data, Split) else len(data)
    return rows * (1 + spec.train.n_negatives if spec.task == "ranking" else 1)


def split_for(spec: DataSpec, data: Interactions | Split, seed: int) -> Split:
    try:
        return split_for_seed(data, spec.task, seed, spec.n_eval_negatives)
    except ValueError as err:
        raise DataError(spec.source, str(err)) from None


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


def _data_config(spec: DataSpec) -> dict[str, Any]:
    out = {"source": spec.source, "label": spec.label, "task": spec.task, "options": dict(spec.options),
           "n_eval_negatives": spec.n_eval_negatives, "refit": spec.refit}
    if spec.source not in DATASETS:
        out["path"] = str(Path(spec.source).resolve())
    if spec.stands_in_for:
        out["stands_in_for"] = spec.stands_in_for
    if spec.anomalies:
        out["file_anomalies"] = list(spec.anomalies)
    return out


def _one_line(r: dict[str, Any]) -> str:
    head = f"{r['dataset']}/{r['task']} {r['variant']:<24} {r['device']:<4} seed {r['seed']:<2}"
    if r["status"] != "ok":
        return f"{head} {r['status'].upper()}: {r.get('error', '')}"
    m = "  ".join(f"{k}={v:.4f}" for k, v in r["metrics"].items() if not k.startswith("full_"))
    speed = f"{r.get('train_samples_per_s', 0) or 0:,.0f} samples/s" if r.get("epochs") else "baseline"
    if (r.get("stacked_seeds") or 1) > 1:
        speed += f" per seed, {r['stacked_seeds']} stacked"
    return f"{head} {m}  ({r['wall_seconds']:.1f}s, {speed})"

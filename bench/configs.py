"""What a trial is: its data set's protocol, its variant's configs (defaults, then tuned or preset
settings), the full config written next to its result, and its record's identity.

A variant's settings on a data set are worked out once, by ``resolve``, into a ``Resolved``: where
a run's jobs are built (``bench.run.runner``: the plan, its checks and estimates, and every unit read
them), where a study starts (its base, with the settings of the studies it starts from) and where a
tuned unit receives its study's winner. Nothing else re-derives a config."""

from __future__ import annotations

import copy
import json
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.params import TunedParams
from bench.suites import DataSpec
from bench.variants import BASELINE, PRETRAIN_BASES, VARIANTS, Variant
from ncf_core import DataError, ModelConfig, TrainConfig
from ncf_core.baselines import reference_config
from ncf_core.config import with_overrides
from ncf_core.data import DATASETS, Interactions, Split, split_for_seed
from ncf_core.engine.history import Diverged
from ncf_core.tasks import task_of


def record(spec: DataSpec, variant: str, device: str, seed: int, **fields: Any) -> dict[str, Any]:
    return {"dataset": spec.label, "task": spec.task, "variant": variant, "device": device, "seed": seed, **fields}


def failed(spec: DataSpec, variant: str, device: str, seed: int, err: Exception, config: dict[str, Any],
           started: float) -> dict[str, Any]:
    """A trial that raised: recorded (diverged or failed) with its error, and the suite goes on."""
    status = "diverged" if isinstance(err, Diverged) else "failed"
    trace = "".join(traceback.format_exception(err, limit=3))
    return record(spec, variant, device, seed, status=status, error=f"{type(err).__name__}: {err}",
                  config=config, traceback=trace, wall_seconds=time.time() - started)


@dataclass(frozen=True)
class Resolved:
    """A variant's settings on one data set: what trains (or fits) and what its trials record."""

    variant: Variant | None  # None: a simple baseline (its config is its data)
    data: dict[str, Any]
    model: ModelConfig | None = None
    train: TrainConfig | None = None
    reference: Any = None  # a reference baseline's settings (ncf_core.baselines)
    bases: dict[str, tuple[ModelConfig, TrainConfig]] = field(default_factory=dict)  # a pretrained NeuMF's
    origin: str = "defaults"  # where the settings come from: the summary names it

    def config(self, tuning: dict[str, Any] | None = None) -> dict[str, Any]:
        """The full config written next to each trial's result (a baseline has only its data)."""
        data = copy.deepcopy(self.data)  # a record's own copy: shared by every trial of the variant
        if self.variant is None:
            return {"data": data}
        trained = {"reference": asdict(self.reference)} if self.reference is not None else \
            {"model": asdict(self.model), "train": asdict(self.train)}
        config = {**trained, "data": data, "variant": asdict(self.variant)}
        if tuning:
            config["tuning"] = {k: tuning[k] for k in ("budget", "sampler", "pruner", "split_seed", "stack")}
        config["settings"] = self.origin
        return config


def resolve(spec: DataSpec, variant: Variant | None, params: TunedParams) -> Resolved:
    """``variant``'s settings on ``spec``: the spec's defaults, then ``params``' (a bad value is a
    one-line error naming --params)."""
    data = data_config(spec)
    if variant is None:
        return Resolved(None, data)
    origin = params.origin(variant.name, spec.label, spec.task) or "defaults"
    if variant.reference:
        return Resolved(variant, data, reference=_reference_settings(spec, variant, params), origin=origin)
    model, train = _variant_configs(spec, variant, params)
    bases = {name: _variant_configs(spec, VARIANTS[name], params) for name in PRETRAIN_BASES} \
        if variant.pretrained else {}
    return Resolved(variant, data, model, train, bases=bases, origin=origin)


def _variant_configs(spec: DataSpec, variant: Variant, params: TunedParams) -> tuple[ModelConfig, TrainConfig]:
    """The spec's configs, tuned overrides for this variant on this data set (``--params``), then the
    variant's own. A pretrained NeuMF takes the shapes of the GMF and MLP it starts from."""
    model, train = _configs(spec, variant.name, params)
    if variant.pretrained:
        train = replace(train, optimizer=variant.optimizer)
        (gmf, _), (mlp, _) = (_configs(spec, name, params) for name in PRETRAIN_BASES)
        model = replace(model, n_factors=gmf.n_factors, mlp_layers=mlp.mlp_layers, dropout=mlp.dropout,
                        use_item_features=gmf.use_item_features or mlp.use_item_features)
    return model, train


def _reference_settings(spec: DataSpec, variant: Variant, params: TunedParams) -> Any:
    """A reference baseline's settings: its published defaults, then tuned or given ones (their
    "model" part of a params entry)."""
    try:
        return reference_config(variant.model, params.for_variant(variant.name, spec.label, spec.task).get("model"))
    except (ValueError, TypeError) as err:
        raise DataError("--params", f"{variant.name} on {spec.label}: {err}") from None


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


COMPARED = ("model", "train", "reference", "variant", "data", "tuning")


def config_difference(stored: dict[str, Any], planned: dict[str, Any], parts: tuple[str, ...] = COMPARED) -> str | None:
    """The first setting in which a stored trial differs from what this run would train, if any."""
    planned = json.loads(json.dumps(planned, default=list))
    for part in parts:
        a, b = stored.get(part) or {}, planned.get(part) or {}
        for key in sorted(set(a) | set(b)):
            if key == "source" or (key == "fingerprint" and key not in a):
                continue  # the same files, perhaps named from another folder; a trial from before fingerprints
            if key == "fingerprint" and a[key] != b.get(key):
                return f"other data under the same label (data fingerprint {a[key]}; this run's {b.get(key)})"
            if a.get(key) != b.get(key):
                return f"{part}.{key} = {a.get(key)!r} (this run: {b.get(key)!r})"
    return None


def data_config(spec: DataSpec) -> dict[str, Any]:
    out = {"source": spec.source, "label": spec.label, "task": spec.task, "options": dict(spec.options),
           "n_eval_negatives": spec.n_eval_negatives, "refit": spec.refit}
    if spec.source not in DATASETS:
        out["path"] = str(Path(spec.source).resolve())
    if spec.fingerprint:
        out["fingerprint"] = spec.fingerprint
    if spec.stands_in_for:
        out["stands_in_for"] = spec.stands_in_for
    if spec.anomalies:
        out["file_anomalies"] = list(spec.anomalies)
    return out


def split_for(spec: DataSpec, data: Interactions | Split, seed: int) -> Split:
    try:
        return split_for_seed(data, spec.task, seed, spec.n_eval_negatives)
    except ValueError as err:
        raise DataError(spec.source, str(err)) from None


def resolved_settings(specs: list[tuple[DataSpec, Any]], variants: tuple[str, ...], baselines: bool,
                      params: TunedParams) -> dict[tuple[int, str], Resolved]:
    """Every (data set index, variant) of a run, resolved once: the plan, its checks, its estimates
    and its units all read these."""
    out = {}
    for index, (spec, _) in enumerate(specs):
        out.update({(index, name): resolve(spec, VARIANTS[name], params) for name in variants})
        if baselines:
            out.update({(index, f"{BASELINE}{b}"): resolve(spec, None, params) for b in task_of(spec.task).baselines})
    return out

"""``best_params.json``: the one owner that writes, reads and scopes tuned settings.

A file holds, per variant, the ``ModelConfig`` / ``TrainConfig`` fields a study chose, scoped to
the data set and task it was tuned on: settings tuned on one data set are never applied to another.
The task itself is the data set's protocol, not a setting: a file cannot switch it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.presets import PRESETS
from ncf_core import DataError, ModelConfig, TrainConfig
from ncf_core.baselines import REFERENCES, reference_config
from ncf_core.config import with_overrides

Tuned = dict[str, dict[str, Any]]  # {"model": {...}, "train": {...}}
FIXED = {"train": ("task",)}  # protocol fields no tuned file may set


class TunedParams:
    """Tuned settings from any number of files: ``for_variant`` answers for one data set and task."""

    def __init__(self, entries: list[dict[str, Any]] | None = None) -> None:
        self.entries = entries or []  # {"variant", "dataset" | None, "task" | None, "model", "train"}

    def __bool__(self) -> bool:
        return bool(self.entries)

    def for_variant(self, variant: str, dataset: str, task: str) -> Tuned:
        """The last file's settings for ``variant`` that were tuned on this data set and task (or unscoped)."""
        entry = self._entry(variant, dataset, task)
        return {"model": entry.get("model", {}), "train": entry.get("train", {})} if entry else {}

    def origin(self, variant: str, dataset: str, task: str) -> str | None:
        """Where ``for_variant``'s settings come from ("preset X", or a file, with its study's trials),
        for the summary to name each variant's settings; None: the protocol's defaults."""
        entry = self._entry(variant, dataset, task)
        if not entry or not entry.get("origin"):  # none, or a winner of this run's own study
            return None
        trials = f", tuned with {entry['trials']} trials" if entry.get("trials") else ""
        return f"{entry['origin']}{trials}"

    def _entry(self, variant: str, dataset: str, task: str) -> dict[str, Any] | None:
        found = None
        for e in self.entries:
            if e["variant"] == variant and e.get("dataset") in (None, dataset) and e.get("task") in (None, task):
                found = e
        return found

    def as_json(self) -> list[dict[str, Any]]:
        return self.entries

    @classmethod
    def load(cls, paths: list[str | Path]) -> TunedParams:
        """Files from ``bench tune``, or the names of published settings (``bench.presets``)."""
        entries: list[dict[str, Any]] = []
        for p in paths:
            if str(p) in PRESETS and not Path(p).exists():
                entries += _entries(str(p), PRESETS[str(p)], origin=f"preset {p}")
            else:
                entries += _read(Path(p))
        return cls(entries)


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, f"file not found (nor a preset: {', '.join(PRESETS)})") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not a best_params.json file") from None
    except UnicodeDecodeError:
        raise DataError(path, "is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    return _entries(path, data)


def _entries(path: Path | str, data: Any, origin: str | None = None) -> list[dict[str, Any]]:
    variants = data.get("variants") if isinstance(data, dict) else None
    if not isinstance(variants, dict):
        raise DataError(path, "expected an object with a 'variants' mapping (bench tune's best_params.json)")
    scope = {k: data.get(k) for k in ("dataset", "task")}
    for k, v in scope.items():
        if v is not None and not isinstance(v, str):
            raise DataError(path, f"{k!r} must be a string, not {type(v).__name__}")
    entries = []
    for name, cfg in variants.items():
        if not isinstance(cfg, dict) or not all(isinstance(cfg.get(p, {}), dict) for p in ("model", "train")):
            raise DataError(path, f"variant {name!r}: expected an object with 'model' and 'train' objects")
        for part, fixed in FIXED.items():
            clash = [f for f in fixed if f in cfg.get(part, {})]
            if clash:
                raise DataError(path, f"variant {name!r}: {part}.{clash[0]} is set by the data set's protocol, "
                                      "not by tuning")
        try:
            if name in REFERENCES:  # a reference baseline's settings are its "model" part
                reference_config(name, cfg.get("model", {}))
                if cfg.get("train"):
                    raise ValueError("a reference baseline takes no 'train' settings")
            else:
                with_overrides(ModelConfig(), cfg.get("model", {}))
                with_overrides(TrainConfig(), cfg.get("train", {}))
        except (ValueError, TypeError) as e:
            raise DataError(path, f"variant {name!r}: {e}") from None
        trials = data.get("trials") if isinstance(data.get("trials"), int) else None
        entries.append({"variant": name, **scope, "model": cfg.get("model", {}), "train": cfg.get("train", {}),
                        "origin": origin or f"params file {path}", "trials": trials})
    return entries


def write(path: Path, payload: dict[str, Any]) -> Path:
    """Write a study's result; the file is complete or absent (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=list), encoding="utf-8")
    os.replace(tmp, path)
    return path

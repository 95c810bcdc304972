"""The trial store: an append-only JSON-lines file, one complete record per line.

Each record is written with one ``write`` and ``fsync``ed before the next trial starts, so a
crash (even SIGKILL) loses at most the trial in progress. A torn last line is ignored on read.
The latest record of a key wins, so a retried failure replaces the failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

KEY_FIELDS = ("dataset", "task", "variant", "device", "seed")


def trial_key(record: dict[str, Any]) -> tuple:
    return tuple(record[f] for f in KEY_FIELDS)


class TrialStore:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "trials.jsonl"
        self.checkpoints = self.run_dir / "checkpoints"

    def records(self) -> list[dict[str, Any]]:
        """Latest record per trial key, in first-seen order."""
        if not self.path.is_file():
            return []
        latest: dict[tuple, dict[str, Any]] = {}
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a crash
                latest[trial_key(record)] = record
        return list(latest.values())

    def finished(self) -> set[tuple]:
        return {trial_key(r) for r in self.records() if r.get("status") == "ok"}

    def append(self, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, default=_jsonable) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def checkpoint_path(self, name: str) -> Path:
        return self.checkpoints / f"{name}.pt"

    def save_checkpoint(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """Atomic: written to a temporary file, then renamed."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_path(name)
        tmp = path.with_suffix(".tmp")
        torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, name: str) -> dict[str, torch.Tensor] | None:
        path = self.checkpoint_path(name)
        return torch.load(path, map_location="cpu") if path.is_file() else None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")

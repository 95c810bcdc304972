"""The stored trials as one table, and which of its columns are a task's metrics."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ncf_core.tasks import TASKS

BASE_COLUMNS = ["dataset", "task", "variant", "device", "seed", "status", "epochs", "best_epoch",
                "train_seconds", "train_samples_per_s", "infer_samples_per_s", "stacked_seeds", "threads", "jobs",
                "load_average"]


def trials_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {c: r.get(c) for c in BASE_COLUMNS}
        row.update(r.get("metrics") or {})
        row["error"] = r.get("error", "")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=BASE_COLUMNS) if not rows else pd.DataFrame(rows)
    for c in BASE_COLUMNS:
        if c not in frame:
            frame[c] = None
    metric_cols = [c for c in frame.columns if c not in BASE_COLUMNS and c != "error"]
    ordered = [c for task in TASKS.values() for c in metric_cols if task.owns(c)]
    ordered = list(dict.fromkeys(ordered)) + sorted(set(metric_cols) - set(ordered))
    if "error" not in frame:
        frame["error"] = ""
    return frame[BASE_COLUMNS + ordered + ["error"]]


def metrics_of(frame: pd.DataFrame, task: str) -> list[str]:
    """The task's reported metrics present in ``frame``, primary first."""
    spec = TASKS[task]
    named = [m for m in spec.metric_names(cutoff(frame)) if m in frame and frame[m].notna().any()]
    named += [c for c in frame.columns if spec.owns(c) and c not in named and frame[c].notna().any()]
    hr, recall = f"full_hr@{cutoff(frame)}", f"full_recall@{cutoff(frame)}"  # leave-one-out: one held-out item each
    same = hr in named and recall in named and frame[hr].equals(frame[recall])
    return [m for m in named if not (same and m == hr)]


def primary_of(frame: pd.DataFrame, task: str) -> str:
    return TASKS[task].primary_metric(cutoff(frame))


def cutoff(frame: pd.DataFrame) -> int:
    for c in frame.columns:
        if "@" in c:
            return int(c.split("@")[1])
    return 10

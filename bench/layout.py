"""Where a run folder keeps what: the one owner of its file names."""

from __future__ import annotations

import hashlib
import json

TRIALS = "trials.jsonl"  # one JSON record per trial, appended by the driver only (bench.run.store)
MANIFEST = "manifest.json"  # what ran, where, with which versions (bench.analysis.manifest)
LOCK = ".lock"  # held by the one bench run using the folder
CHECKPOINTS = "checkpoints"  # the GMF and MLP weights pretrained NeuMFs start from (bench.compute.pretrain)
TUNING = "tuning"  # a tuned run's studies and their checkpoints
STUDIES = "studies.db"  # the studies' SQLite database, inside TUNING
REPORT = "report"  # a link to the current report's folder, swapped whole (bench.analysis.report)
PER_USER = "per_user"  # one Parquet file per trial: its metrics per test user (bench.run.store)
REPORT_FILES = ".written"  # in a report's folder: the names of the files the harness wrote there
REPORT_DRAFT = ".report-"  # a report folder's name starts so (bench.analysis.report), as does its link's
# What a run writes before its first trial (a tuned run's studies, a lock a kill left behind).
BEFORE_TRIALS = frozenset({LOCK, TUNING, CHECKPOINTS, PER_USER})


def not_a_run_folder(names: set[str]) -> str | None:
    """Why a folder holding ``names`` is no run folder, or None: a run writes only into a new or
    empty folder, or one it made (its trials, or only what a run writes before them), so that
    nothing of a user's is overwritten, merged into or removed."""
    if not names or TRIALS in names:
        return None
    foreign = sorted(n for n in names if n not in BEFORE_TRIALS and not n.startswith(REPORT_DRAFT))
    if not foreign:
        return None
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    return f"is not a run folder (it holds {shown}, and no {TRIALS}); give --out a new or empty folder"


def file_label(label: str) -> str:
    """A data set's label as part of a file or study name: itself where every character is safe, else
    the safe characters, "~" and a digest of the whole ("a/p" and "a_p" never share a checkpoint)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return label if safe == label else f"{safe}~{hashlib.sha256(label.encode()).hexdigest()[:8]}"


def per_user_name(key: tuple) -> str:
    """A trial's per-user file: readable, and injective in the key (a digest of all of it), so that
    labels that differ only in characters a file name cannot hold never share a file."""
    digest = hashlib.sha256(json.dumps(list(key)).encode()).hexdigest()[:16]
    return f"{key[2]}-seed{key[4]}-{digest}.parquet"

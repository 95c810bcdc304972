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


def per_user_name(key: tuple) -> str:
    """A trial's per-user file: readable, and injective in the key (a digest of all of it), so that
    labels that differ only in characters a file name cannot hold never share a file."""
    digest = hashlib.sha256(json.dumps(list(key)).encode()).hexdigest()[:16]
    return f"{key[2]}-seed{key[4]}-{digest}.parquet"

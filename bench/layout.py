"""Where a run folder keeps what: the one owner of its file names."""

from __future__ import annotations

TRIALS = "trials.jsonl"  # one JSON record per trial, appended by the driver only (bench.run.store)
MANIFEST = "manifest.json"  # what ran, where, with which versions (bench.analysis.manifest)
LOCK = ".lock"  # held by the one bench run using the folder
CHECKPOINTS = "checkpoints"  # the GMF and MLP weights pretrained NeuMFs start from (bench.compute.pretrain)
TUNING = "tuning"  # a tuned run's studies and their checkpoints
STUDIES = "studies.db"  # the studies' SQLite database, inside TUNING
REPORT = "report"  # a link to the current report's folder, swapped whole (bench.analysis.report)

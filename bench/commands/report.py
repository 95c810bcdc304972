"""`bench report`: every table and plot rebuilt from a run folder's stored trials."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import layout
from ncf_core import DataError


def execute(args: argparse.Namespace) -> int:
    from bench.analysis.report import write_report
    from bench.run.store import FolderBusy, TrialStore

    run_dir = Path(args.run_dir)
    if not (run_dir / layout.TRIALS).is_file():
        raise DataError(run_dir / layout.TRIALS, "no stored trials (not a run folder?)")
    store = TrialStore(run_dir)
    if args.to is not None:  # read-only: a run may hold the folder and go on appending trials
        to = Path(args.to)
        if to.resolve().is_relative_to(run_dir.resolve()):
            raise DataError(to, "--to must be outside the run folder (the run writes there)")
        store.check_folder()
        paths = write_report(run_dir, to)
    else:
        try:
            with store.locked():
                paths = write_report(run_dir)
        except FolderBusy:
            raise DataError(run_dir, "a bench run is using this folder; `bench report RUN_DIR --to DIR` writes "
                                     "an interim report of the trials stored so far") from None
    print(f"wrote {', '.join(p.name for p in paths.values())} to {next(iter(paths.values())).parent}")
    return 0

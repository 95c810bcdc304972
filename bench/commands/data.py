"""`bench data`: fetch the public data sets (resumable, checksummed), or list what is present."""

from __future__ import annotations

import argparse
from pathlib import Path

from ncf_core import DataError


def execute(args: argparse.Namespace) -> int:
    from tabulate import tabulate
    from tqdm import tqdm

    from ncf_core.data import DATASETS, available, load
    from ncf_core.data.fetch import SOURCES, fetch, status

    data_dir = Path(args.data_dir)
    if args.action == "list":
        if not data_dir.is_dir():
            raise DataError(data_dir, "data directory not found")
        print(tabulate([[s.name, status(s, data_dir), s.note] for s in SOURCES.values()],
                       headers=["source", f"under {data_dir}", ""]))
        for name, spec in DATASETS.items():  # a published split's quirks, as bench run will read them
            if spec.published and available(name, data_dir):
                anomalies = load(name, data_dir=data_dir).anomalies
                print(f"\n{name}: " + ("no quirks: every row has its own distinct negatives" if not anomalies else
                                       "read as the reference code reads it:\n  " +
                                       "\n  ".join(a.line() for a in anomalies)))
        print("\nanime (Kaggle, needs an account): put anime.csv and rating.csv in "
              f"{data_dir / 'anime'} yourself")
        return 0
    unknown = [n for n in args.names if n not in SOURCES]
    if unknown or not args.names:
        raise DataError("bench data fetch", f"name one or more of {', '.join(SOURCES)}"
                        + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        bars = []

        def progress(start: int, total: int | None, name: str = name, bars: list = bars):
            bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name, dynamic_ncols=True)
            bars.append(bar)
            return bar.update

        try:
            stamp = fetch(SOURCES[name], data_dir, progress, mirror=args.mirror)
        finally:
            for bar in bars:
                bar.close()
        print(f"{name}: {len(stamp['verified'])} file(s) in {data_dir}; " + "; ".join(
            f"{k.rsplit('/', 1)[-1]} {v}" for k, v in stamp["verified"].items()))
    return 0

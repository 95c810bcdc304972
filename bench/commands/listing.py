"""`bench list`: the suites, variants, data sets and devices a run can name."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.suites import SUITES
from bench.variants import VARIANTS
from ncf_core import DataError


def execute(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.run.options import present_devices
    from ncf_core.data import DATASETS, available

    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise DataError(args.data_dir, "data directory not found")
    print("suites:")
    print(tabulate([[s.name, len(s.datasets), s.seeds, ",".join(s.devices), s.description]
                    for s in SUITES.values()], headers=["name", "data sets", "seeds", "devices", "what it runs"]))
    print("\nvariants:")
    print(tabulate([[v.name, "reference (ranking)" if v.reference else "NCF", v.model,
                     "yes" if v.pretrained else "no", "—" if v.reference else v.optimizer] for v in VARIANTS.values()],
                   headers=["name", "kind", "model", "pretrained", "optimizer"]))
    print(f"\ndata sets (under {args.data_dir or 'no --data-dir'}):")
    print(tabulate([[d.name, d.task, "yes" if available(d.name, args.data_dir) else "no"]
                    for d in DATASETS.values()], headers=["name", "protocol", "found"]))
    print(f"\ndevices present: {', '.join(present_devices())}")
    return 0

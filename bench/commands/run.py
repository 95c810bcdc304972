"""`bench run`: a suite's seeded trials, resumed where a folder holds some, and the report."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from bench import layout
from bench.commands.common import LATEST, csv_names, prog
from bench.suites import SUITES
from ncf_core import DataError


def execute(args: argparse.Namespace) -> int:
    from bench.params import TunedParams
    from bench.run.options import RunOptions
    from bench.run.runner import Runner

    suite = SUITES[args.suite]
    out = run_folder(args, suite.name)
    opts = RunOptions(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        datasets=csv_names(args.datasets) if args.datasets is not None else None,
        variants=csv_names(args.variants) if args.variants is not None else None,
        seeds=args.seeds, devices=csv_names(args.devices) if args.devices is not None else None,
        epochs=args.epochs, params=TunedParams.load(args.params or []), refit=args.refit, all_rows=args.all_rows,
        tune=args.tune, tune_stack=args.tune_stack, pruner=args.pruner, sampler_seed=args.sampler_seed,
        stack=not args.no_stack, jobs=args.jobs, threads=args.threads,
        strict_files=args.strict_files, synthetic=args.synthetic, offline=args.offline, mirror=args.mirror,
        planning=args.plan,
    )
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    executor = None
    if args.ray is not None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise DataError("--ray", "Ray is not installed: pip install -e '.[ray]'") from None
        from bench.run.executors import RayExecutor
        from bench.run.options import cpu_cores

        executor = RayExecutor(None if args.ray == "local" else args.ray, opts.threads or cpu_cores())
    runner = Runner(suite, opts, out, log=log, executor=executor)
    if args.plan:
        runner.load()
        print(runner.describe(*runner.estimate(log)))
        return 0
    started = time.time()
    try:
        records = runner.run()
    except KeyboardInterrupt:
        stored = sum(r["status"] == "ok" for r in runner.store.records())
        again = args.argv + ([] if args.out or args.resume else ["--out", str(out)])
        print(f"interrupted: {stored} trials are stored in {out}; resume with: {prog()} {shlex.join(again)}",
              file=sys.stderr)
        return 130
    from bench.analysis.manifest import record_run  # here: a refused run need not import the plotting
    from bench.analysis.report import write_report

    with runner.store.locked():
        record_run(out, runner, suite=suite, options=opts, started=started, trials_run=len(records))
        paths = write_report(out)
    failed = [r for r in runner.store.records() if r["status"] != "ok"]
    print(f"wrote {', '.join(p.name for p in paths.values())} to {out / layout.REPORT}")
    if failed:
        print(f"{len(failed)} trial(s) failed; see {out / layout.REPORT / 'summary.md'}", file=sys.stderr)
        return 1
    return 0


def run_folder(args: argparse.Namespace, suite: str) -> Path:
    """--out, --resume's folder, the newest of the suite's default folders, or a new one."""
    if args.out and args.resume:
        raise DataError("--resume", "give --out or --resume, not both")
    if args.resume not in (None, LATEST):
        if not (Path(args.resume) / layout.TRIALS).is_file():
            raise DataError(args.resume, "no stored trials to resume (not a run folder?)")
        return Path(args.resume)
    if args.resume == LATEST:
        found = sorted(p.parent for p in Path("results").glob(f"{suite}-*/{layout.TRIALS}"))
        if not found:
            raise DataError("--resume", f"no results/{suite}-* run folder to resume here; give its folder")
        return found[-1]  # the names hold their UTC start time: the last sorts newest
    return Path(args.out or f"results/{suite}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")

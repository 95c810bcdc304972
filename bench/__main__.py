"""python -m bench {run, report, list, tune, speed, benchtable}: the harness's command line.

The parser imports nothing heavy: ``--help`` answers at once, and each command imports what it
needs (torch, optuna) when it runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from bench import layout
from bench.presets import PRESETS
from bench.search import DEFAULT_PRUNER, GRACE_S, HEARTBEAT_S, PRUNERS, SAMPLER_SEED
from bench.suites import SUITES
from bench.variants import VARIANTS
from ncf_core import DataError

LATEST = "latest"  # --resume without a folder


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    from bench.analysis.manifest import record_run
    from bench.analysis.report import write_report
    from bench.params import TunedParams
    from bench.run.options import RunOptions
    from bench.run.runner import Runner

    suite = SUITES[args.suite]
    out = _run_folder(args, suite.name)
    opts = RunOptions(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        datasets=_csv(args.datasets) if args.datasets is not None else None,
        variants=_csv(args.variants) if args.variants is not None else None,
        seeds=args.seeds, devices=_csv(args.devices) if args.devices is not None else None,
        epochs=args.epochs, params=TunedParams.load(args.params or []), refit=args.refit, all_rows=args.all_rows,
        tune=args.tune, tune_stack=args.tune_stack, pruner=args.pruner, sampler_seed=args.sampler_seed,
        stack=not args.no_stack, jobs=args.jobs, threads=args.threads,
        strict_files=args.strict_files, synthetic=args.synthetic, offline=args.offline, mirror=args.mirror,
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
        print(f"interrupted: {stored} trials are stored in {out}; resume with: {_prog()} {shlex.join(again)}",
              file=sys.stderr)
        return 130
    with runner.store.locked():
        record_run(out, runner, suite=suite, options=opts, started=started, trials_run=len(records))
        paths = write_report(out)
    failed = [r for r in runner.store.records() if r["status"] != "ok"]
    print(f"wrote {', '.join(p.name for p in paths.values())} to {out / layout.REPORT}")
    if failed:
        print(f"{len(failed)} trial(s) failed; see {out / layout.REPORT / 'summary.md'}", file=sys.stderr)
        return 1
    return 0


def _run_folder(args: argparse.Namespace, suite: str) -> Path:
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


def _prog() -> str:
    """The command as the user typed it."""
    return "ncf-bench" if Path(sys.argv[0]).name == "ncf-bench" else "python -m bench"


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown where they say something: not after a flag (False) or an option whose help
    states what leaving it out does (None)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def cmd_report(args: argparse.Namespace) -> int:
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


def cmd_list(args: argparse.Namespace) -> int:
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


def cmd_tune(args: argparse.Namespace) -> int:
    from bench import tune  # optuna is imported only by the command that needs it

    return tune.run(args)


def cmd_speed(args: argparse.Namespace) -> int:
    from bench import speed

    return speed.run(args)


def cmd_benchtable(args: argparse.Namespace) -> int:
    from bench import speed

    return speed.benchmark_table(args)


def cmd_data(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    fmt = _Help
    parser = argparse.ArgumentParser(prog=_prog(), description=__doc__.splitlines()[0],
                                     formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite of seeded trials and write the report", formatter_class=fmt)
    run.add_argument("--suite", choices=list(SUITES), default="smoke", help="which suite (bench list shows them)")
    run.add_argument("--data-dir", help="folder holding anime/, ml-100k/, ncf/, ... in their original file names; "
                                        "missing public sets are fetched into it (see --offline, --synthetic)")
    run.add_argument("--datasets", help="comma-separated registered names or paths (folder or NCF prefix); "
                                        "default: the suite's")
    run.add_argument("--variants", help=f"comma-separated subset of {','.join(VARIANTS)}; default: the suite's")
    run.add_argument("--seeds", type=positive_int, help="number of seeds, 0..N-1; default: the suite's")
    run.add_argument("--devices", help="comma-separated: cpu, cuda, auto (every device present); default: the suite's")
    run.add_argument("--epochs", type=positive_int, help="override every data set's epoch count")
    run.add_argument("--params", nargs="+", help="best_params.json files from bench tune, or published settings by "
                                                 f"name ({', '.join(PRESETS)}: MF as Rendle et al. 2020 trained it)")
    run.add_argument("--tune", type=nonnegative_int, metavar="N",
                     help="first give every (data set, variant) its own Optuna study of N trials (same sampler "
                          "seed and pruner, validation split of a tuning seed), then run the seeds with each "
                          "variant's best settings; 0 = the paper's defaults (default: the suite's)")
    run.add_argument("--tune-stack", type=positive_int, metavar="K",
                     help="train a study's trials K at a time as one stacked module (they share shapes, batch size "
                          "and negatives; each its own learning rate, regularisation, dropout, ...); 1 = one at a "
                          "time; default: about the square root of the budget, as memory allows")
    run.add_argument("--pruner", choices=list(PRUNERS), default=DEFAULT_PRUNER,
                     help="how studies stop poor trials early: " + "; ".join(f"{k}: {v}" for k, v in PRUNERS.items()))
    run.add_argument("--sampler-seed", type=nonnegative_int, default=SAMPLER_SEED,
                     help="TPE's seed for the run's studies (trial n draws from (seed, n))")
    run.add_argument("--plan", action="store_true",
                     help="print what the run would do (studies, seeded units, seed groups) and its estimated wall "
                          "time from a short probe of the engine on each data set; trains and writes nothing")
    run.add_argument("--all-rows", action="store_true",
                     help="read every row of a data set whose protocol reads the first N (anime: 100,000); "
                          "its label gets -all-rows")
    run.add_argument("--refit", action=argparse.BooleanOptionalAction,
                     help="after choosing the epoch count on validation, retrain on training + validation data "
                          "before the test (default: each data set's protocol; on for full's ranking sets)")
    run.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="run each unit of work as a Ray task: on a local Ray instance, or on a cluster "
                          "(auto, ray://host:10001); the driver stays the only writer of the trial store")
    run.add_argument("--jobs", type=positive_int, metavar="N",
                     help="worker processes for tuning studies and trials, each with its share of the cores "
                          "(small models train faster on one thread than on two); default: one per core on a "
                          "CPU-only run, 1 when a GPU takes part. Throughput is measured under the other jobs' load")
    run.add_argument("--threads", type=positive_int, metavar="N",
                     help="torch threads every job trains on; default: the cores over --jobs. A model's numbers "
                          "depend on it (an MLP's on ML-1M shapes differ between one thread and two), so a run "
                          "resumes only with the threads it started with")
    run.add_argument("--synthetic", action="store_true",
                     help="run a missing data set as labelled synthetic data of its task (a stand-in) instead of "
                          "fetching it or stopping")
    run.add_argument("--offline", action="store_true",
                     help="never download: a missing public data set stops the run with the command that fetches it")
    run.add_argument("--mirror", help="fetch missing public sets from this folder URL (same file names)")
    run.add_argument("--strict-files", action="store_true",
                     help="refuse a published split's quirks (a test item among its negatives, a repeated negative, "
                          "...) with a one-line error instead of reading them as the reference code does")
    run.add_argument("--no-stack", action="store_true",
                     help="train each seed alone instead of a variant's seeds as one stacked model")
    run.add_argument("--out", help="run folder (default results/<suite>-<UTC time>); rerunning the same "
                                   "command on it resumes it")
    run.add_argument("--resume", nargs="?", const=LATEST, metavar="FOLDER",
                     help="resume a stopped run: FOLDER, or without one the newest results/<suite>-* folder")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="rebuild the tables and plots from a run folder's stored trials",
                            formatter_class=fmt)
    report.add_argument("run_dir", help="a bench run --out folder")
    report.add_argument("--to", metavar="DIR", help="write the report to DIR (outside the run folder) without "
                        "taking the folder: an interim report while a run goes on")
    report.set_defaults(func=cmd_report)

    lst = sub.add_parser("list", help="suites, variants, data sets and devices", formatter_class=fmt)
    lst.add_argument("--data-dir", help="folder to look for the registered data sets in")
    lst.set_defaults(func=cmd_list)

    tune = sub.add_parser("tune", help="Optuna study of one variant on one data set (validation split only)",
                          formatter_class=fmt)
    tune.add_argument("--dataset", required=True, help="registered name or path, as for bench run --datasets")
    tune.add_argument("--variant", required=True, choices=list(VARIANTS), help="the variant to tune")
    tune.add_argument("--data-dir", help="as for bench run")
    tune.add_argument("--trials", type=positive_int, default=20, help="trials this worker runs")
    tune.add_argument("--timeout", type=float, help="seconds for this worker")
    tune.add_argument("--storage", help="any SQLAlchemy URL; a shared PostgreSQL URL lets many machines work "
                                        "on one study (default: sqlite in the --out folder)")
    tune.add_argument("--study", help="study name (default: <dataset>-<task>-<variant>)")
    tune.add_argument("--sampler-seed", type=nonnegative_int, default=SAMPLER_SEED,
                      help="TPE seed (give each extra worker its own)")
    tune.add_argument("--epochs", type=positive_int, help="override the data set's epoch count")
    tune.add_argument("--device", default="cpu", help="cpu or cuda")
    tune.add_argument("--workers", type=positive_int, default=1,
                      help="local worker processes on the one study (sampler seeds --sampler-seed, +1, ...), "
                           "each running --trials")
    tune.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)
    tune.add_argument("--stack", type=positive_int, default=1, metavar="K",
                      help="trials trained at a time as one stacked module (see bench run --tune-stack)")
    tune.add_argument("--pruner", choices=list(PRUNERS), default=DEFAULT_PRUNER, help="how poor trials stop early")
    tune.add_argument("--strict-files", action="store_true", help="as for bench run")
    tune.add_argument("--heartbeat", type=positive_int, default=HEARTBEAT_S,
                      help="seconds between a worker's heartbeats")
    tune.add_argument("--grace", type=positive_int, default=GRACE_S,
                      help="seconds without a heartbeat after which a trial counts as failed and is retried")
    tune.add_argument("--out", help="folder for best_params.json, trials.csv, tune.md and the study database "
                                    "(default results/tune-<study>)")
    tune.set_defaults(func=cmd_tune)

    speed = sub.add_parser("speed", help="engine vs the usual DataLoader loop: training samples/s",
                           formatter_class=fmt)
    speed.add_argument("--devices", help="comma-separated: cpu, cuda (default: every device present)")
    speed.add_argument("--batch-sizes", default="256,4096", help="comma-separated (256 should stay)")
    speed.add_argument("--models", help="comma-separated subset of mf,gmf,mlp,neumf (default: all)")
    speed.add_argument("--modes", default="single,stacked10", help="comma-separated subset of single,stacked10")
    speed.add_argument("--large", action="store_true",
                       help="also NeuMF at ML-20M shapes, 64 factors, batch 2^20 (a GPU measurement; slow on a CPU)")
    speed.add_argument("--out", default="results/speed", help="folder for speed.csv and speed.md")
    speed.set_defaults(func=cmd_speed)

    data = sub.add_parser("data", help="fetch the public data sets (resumable, checksummed) or list what is present",
                          formatter_class=fmt)
    data.add_argument("action", choices=("fetch", "list"))
    data.add_argument("names", nargs="*", help="for fetch: ml-100k, ml-1m, ml-20m, ml-25m, ncf-ml-1m, ncf-pinterest-20")
    data.add_argument("--data-dir", required=True, help="the folder bench run --data-dir reads")
    data.add_argument("--mirror", help="fetch each file from this folder URL instead of its origin (same file names)")
    data.set_defaults(func=cmd_data)

    table = sub.add_parser("benchtable", help="markdown table of GPU/CPU speed-ups from pytest-benchmark JSON",
                           formatter_class=fmt)
    table.add_argument("json", help="pytest-benchmark's --benchmark-json file")
    table.add_argument("--out", default="results/benchmark.md", help="markdown file to write")
    table.set_defaults(func=cmd_benchtable)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a resume line repeats
    try:
        return args.func(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trials are stored; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped (| head)
        sys.stderr.close()
        return 0
    except OSError as err:  # the machine's, not the harness's: a full disk, a folder that takes no files
        print(f"error: {err.filename or 'bench'}: {err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

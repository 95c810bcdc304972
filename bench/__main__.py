"""python -m bench {run, report, list, tune, speed, data, benchtable}: the harness's command line.

The parser imports nothing heavy: ``--help`` answers at once, and each command imports what it
needs (torch, optuna) when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from bench.commands.common import LATEST, nonnegative_int, positive_int, prog
from bench.presets import PRESETS
from bench.search import DEFAULT_PRUNER, GRACE_S, HEARTBEAT_S, PRUNERS, SAMPLER_SEED
from bench.suites import SUITES
from bench.variants import VARIANTS
from ncf_core import DataError


def _lazy(module: str, name: str = "execute") -> Callable[[argparse.Namespace], int]:
    """A command's function, its module imported when it runs (``--help`` imports no torch)."""
    def resolve() -> Callable[[argparse.Namespace], int]:
        return getattr(importlib.import_module(f"bench.commands.{module}"), name)

    def call(args: argparse.Namespace) -> int:
        return resolve()(args)
    call.resolve = resolve  # type: ignore[attr-defined]  # tests/test_imports.py resolves every command
    return call


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown where they say something: not after a flag (False) or an option whose help
    states what leaving it out does (None)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    fmt = _Help
    parser = argparse.ArgumentParser(prog=prog(), description=__doc__.splitlines()[0],
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
                     help="train a study's trials K at a time as one stacked module (each draws all its settings, "
                          "as one at a time; trials of another MLP depth or optimizer stack apart); 1 = one at a "
                          "time; default: 1 on a CPU (a stack costs about what its trials cost one by one there); "
                          "on CUDA about the square root of the budget, at most a fifth of it (under 10 trials one "
                          "at a time), as memory allows")
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
                          "CPU-only run, 1 when a GPU takes part, and none (this process, on the same threads) "
                          "where the run's work would not repay starting them. Throughput is measured under the "
                          "other jobs' load")
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
    run.set_defaults(func=_lazy("run"))

    report = sub.add_parser("report", help="rebuild the tables and plots from a run folder's stored trials",
                            formatter_class=fmt)
    report.add_argument("run_dir", help="a bench run --out folder")
    report.add_argument("--to", metavar="DIR", help="write the report to DIR (outside the run folder) without "
                        "taking the folder: an interim report while a run goes on")
    report.set_defaults(func=_lazy("report"))

    lst = sub.add_parser("list", help="suites, variants, data sets and devices", formatter_class=fmt)
    lst.add_argument("--data-dir", help="folder to look for the registered data sets in")
    lst.set_defaults(func=_lazy("listing"))

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
    tune.add_argument("--stack", type=positive_int, metavar="K",
                      help="trials trained at a time as one stacked module; default: as bench run --tune "
                           "stacks them (1 on a CPU; on CUDA about the square root of --trials, at most a fifth "
                           "of it, within memory), or 1 on a study other workers may share (--storage, --workers)")
    tune.add_argument("--pruner", choices=list(PRUNERS), default=DEFAULT_PRUNER, help="how poor trials stop early")
    tune.add_argument("--strict-files", action="store_true", help="as for bench run")
    tune.add_argument("--heartbeat", type=positive_int, default=HEARTBEAT_S,
                      help="seconds between a worker's heartbeats")
    tune.add_argument("--grace", type=positive_int, default=GRACE_S,
                      help="seconds without a heartbeat after which a trial counts as failed and is retried")
    tune.add_argument("--out", help="folder for best_params.json, trials.csv, tune.md and the study database "
                                    "(default results/tune-<study>)")
    tune.set_defaults(func=_lazy("tune"))

    speed = sub.add_parser("speed", help="engine vs the usual DataLoader loop: training samples/s",
                           formatter_class=fmt)
    speed.add_argument("--devices", help="comma-separated: cpu, cuda (default: every device present)")
    speed.add_argument("--batch-sizes", default="256,4096", help="comma-separated (256 should stay)")
    speed.add_argument("--models", help="comma-separated subset of mf,gmf,mlp,neumf (default: all)")
    speed.add_argument("--modes", default="single,stacked10", help="comma-separated subset of single,stacked10")
    speed.add_argument("--large", action="store_true",
                       help="also NeuMF at ML-20M shapes, 64 factors, batch 2^20 (a GPU measurement; slow on a CPU)")
    speed.add_argument("--out", default="results/speed", help="folder for speed.csv and speed.md")
    speed.set_defaults(func=_lazy("speed"))

    data = sub.add_parser("data", help="fetch the public data sets (resumable, checksummed) or list what is present",
                          formatter_class=fmt)
    data.add_argument("action", choices=("fetch", "list"))
    data.add_argument("names", nargs="*", help="for fetch: ml-100k, ml-1m, ml-20m, ml-25m, ncf-ml-1m, ncf-pinterest-20")
    data.add_argument("--data-dir", required=True, help="the folder bench run --data-dir reads")
    data.add_argument("--mirror", help="fetch each file from this folder URL instead of its origin (same file names)")
    data.set_defaults(func=_lazy("data"))

    table = sub.add_parser("benchtable", help="markdown table of GPU/CPU speed-ups from pytest-benchmark JSON",
                           formatter_class=fmt)
    table.add_argument("json", help="pytest-benchmark's --benchmark-json file")
    table.add_argument("--out", default="results/benchmark.md", help="markdown file to write")
    table.set_defaults(func=_lazy("speed", "benchmark_table"))
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

"""python -m bench {run, report, list, tune, speed}: the harness's command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ncf_core import DataError, ModelConfig, TrainConfig
from ncf_core.config import with_overrides


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def load_params(paths: list[str]) -> dict[str, dict]:
    """Merge ``best_params.json`` files (from ``bench tune``) into {variant: {model, train}}."""
    merged: dict[str, dict] = {}
    for p in paths:
        path = Path(p)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(path, "file not found") from None
        except json.JSONDecodeError as e:
            raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno})") from None
        variants = data.get("variants") if isinstance(data, dict) else None
        if not isinstance(variants, dict):
            raise DataError(path, "expected an object with a 'variants' mapping (bench tune's best_params.json)")
        for name, cfg in variants.items():
            try:
                with_overrides(ModelConfig(), cfg.get("model", {}))
                with_overrides(TrainConfig(), cfg.get("train", {}))
            except (ValueError, TypeError) as e:
                raise DataError(path, f"variant {name!r}: {e}") from None
        scope = {k: data[k] for k in ("dataset", "task") if k in data}
        merged.update({name: {**cfg, **scope} for name, cfg in variants.items()})
    return merged


def cmd_run(args: argparse.Namespace) -> int:
    from bench.manifest import write_manifest
    from bench.report import write_report
    from bench.runner import Runner, RunOptions
    from bench.suites import SUITES

    suite = SUITES[args.suite]
    out = Path(args.out or f"results/{suite.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    opts = RunOptions(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        datasets=_csv(args.datasets) if args.datasets else None,
        variants=_csv(args.variants) if args.variants else None,
        seeds=args.seeds, devices=_csv(args.devices) if args.devices else None,
        epochs=args.epochs, params=load_params(args.params or []), stack=not args.no_stack,
    )
    runner = Runner(suite, opts, out, log=lambda m: print(m, file=sys.stderr))
    started = time.time()
    records = runner.run()
    stacking = runner.stacking_note()
    write_manifest(out, suite=suite, options=opts, seeds=runner.seeds, devices=runner.devices,
                   **({"seed_stacking": stacking} if stacking else {}),
                   variants=runner.variants, last_run={"started": started, "seconds": time.time() - started,
                                                       "trials_run": len(records)})
    paths = write_report(out)
    failed = [r for r in runner.store.records() if r["status"] != "ok"]
    print(f"wrote {', '.join(p.name for p in paths.values())} to {out}")
    if failed:
        print(f"{len(failed)} trial(s) failed; see {out / 'summary.md'}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    try:
        paths = write_report(Path(args.run_dir))
    except FileNotFoundError as e:
        raise DataError(args.run_dir, str(e).split(": ", 1)[-1]) from None
    print(f"wrote {', '.join(p.name for p in paths.values())} to {args.run_dir}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.runner import present_devices
    from bench.suites import SUITES, VARIANTS
    from ncf_core.data import DATASETS, available

    print("suites:")
    print(tabulate([[s.name, len(s.datasets), s.seeds, ",".join(s.devices), s.description]
                    for s in SUITES.values()], headers=["name", "data sets", "seeds", "devices", ""]))
    print("\nvariants:")
    print(tabulate([[v.name, v.model, "yes" if v.pretrained else "no", v.optimizer] for v in VARIANTS.values()],
                   headers=["name", "model", "pretrained", "optimizer"]))
    print(f"\ndata sets (under {args.data_dir or 'no --data-dir'}):")
    print(tabulate([[d.name, d.task, "yes" if available(d.name, args.data_dir) else "no"]
                    for d in DATASETS.values()], headers=["name", "protocol", "found"]))
    print(f"\ndevices present: {', '.join(present_devices())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from bench.suites import SUITES, VARIANTS

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite of seeded trials and write the report")
    run.add_argument("--suite", choices=sorted(SUITES), default="smoke")
    run.add_argument("--data-dir", help="folder holding anime/, ml-100k/, ... in their original file names")
    run.add_argument("--datasets", help="comma-separated registered names or paths (folder or NCF prefix)")
    run.add_argument("--variants", help="comma-separated variant names (default: the suite's)")
    run.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    run.add_argument("--devices", help="comma-separated: cpu, cuda, auto")
    run.add_argument("--epochs", type=int, help="override every data set's epoch count")
    run.add_argument("--params", nargs="+", help="best_params.json files from bench tune")
    run.add_argument("--no-stack", action="store_true",
                     help="train each seed alone instead of a variant's seeds as one stacked model")
    run.add_argument("--out", help="run folder (default results/<suite>-<UTC time>); reruns resume it")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="rebuild the tables and plots from a run folder's stored trials")
    report.add_argument("run_dir")
    report.set_defaults(func=cmd_report)

    lst = sub.add_parser("list", help="suites, variants, data sets and devices")
    lst.add_argument("--data-dir")
    lst.set_defaults(func=cmd_list)

    tune = sub.add_parser("tune", help="Optuna study of one variant on one data set (validation split only)")
    tune.add_argument("--dataset", required=True, help="registered name or path, as for bench run --datasets")
    tune.add_argument("--variant", required=True, help=f"one of {', '.join(VARIANTS)}")
    tune.add_argument("--data-dir")
    tune.add_argument("--trials", type=int, default=20)
    tune.add_argument("--timeout", type=float, help="seconds for this worker")
    tune.add_argument("--storage", default="sqlite:///results/optuna.db",
                      help="any SQLAlchemy URL; a shared PostgreSQL URL lets many machines work on one study")
    tune.add_argument("--study", help="study name (default: <dataset>-<task>-<variant>)")
    tune.add_argument("--sampler-seed", type=int, help="TPE seed (give each worker its own)")
    tune.add_argument("--epochs", type=int, help="override the data set's epoch count")
    tune.add_argument("--device", default="cpu")
    tune.add_argument("--out", help="folder for best_params.json, trials.csv, tune.md")
    tune.set_defaults(func=cmd_tune)

    from bench import speed

    speed.add_parser(sub)
    return parser


def cmd_tune(args: argparse.Namespace) -> int:
    from bench import tune  # optuna is imported only by the command that needs it

    return tune.run(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trials are stored; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

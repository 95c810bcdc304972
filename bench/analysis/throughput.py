"""Throughput as stored with each trial: the table, and the summary's section on it."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.variants import BASELINE, REFERENCE_VARIANTS

SPREAD_WARNING = 0.25  # coefficient of variation of samples/s across seeds that suggests a busy machine


def throughput_table(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[(frame["status"] == "ok") & ~frame["variant"].str.startswith(BASELINE)
               & ~frame["variant"].isin(REFERENCE_VARIANTS)]  # a reference fits, it does not stream examples
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "task", "variant", "device", "n"])
    ok = ok.assign(**{c: ok.get(c, math.nan) for c in ("threads", "jobs", "load_average")})  # older stores lack them
    agg = ok.groupby(["dataset", "task", "variant", "device"], sort=False).agg(
        n=("seed", "count"),
        train_samples_per_s_mean=("train_samples_per_s", "mean"),
        train_samples_per_s_std=("train_samples_per_s", "std"),
        infer_samples_per_s_mean=("infer_samples_per_s", "mean"),
        infer_samples_per_s_std=("infer_samples_per_s", "std"),
        train_seconds_mean=("train_seconds", "mean"),
        stacked_seeds=("stacked_seeds", "max"),
        threads=("threads", "max"),
        jobs=("jobs", "max"),
        timings=("train_samples_per_s", "nunique"),
        load_max=("load_average", "max"),
    ).reset_index()
    agg["train_cv"] = agg["train_samples_per_s_std"] / agg["train_samples_per_s_mean"]
    agg.loc[agg["timings"] < 2, "train_cv"] = math.nan  # seeds of one stack share its timing: no spread measured
    return agg.drop(columns="timings")


def _threads(threads: Any, jobs: Any) -> str:
    if pd.isna(threads):
        return "—"  # stored before the harness recorded it
    return f"{int(threads)} × {1 if pd.isna(jobs) else int(jobs)}"


def throughput_lines(throughput: pd.DataFrame) -> list[str]:
    if not len(throughput):
        return []
    out: list[str] = []
    rows = [[r.dataset, r.task, r.variant, r.device, r.n, _stacked(r.stacked_seeds), _threads(r.threads, r.jobs),
             f"{r.train_samples_per_s_mean:,.0f}", ("—" if pd.isna(r.train_cv) else f"{r.train_cv:.2f}"),
             f"{r.train_samples_per_s_mean * _stacked(r.stacked_seeds):,.0f}",
             f"{r.infer_samples_per_s_mean:,.0f}", f"{r.train_seconds_mean:.1f}"]
            for r in throughput.itertuples()]
    noisy = throughput[throughput["train_cv"] > SPREAD_WARNING]
    out += ["## Throughput", "",
            "Stacked seeds train as one model: samples/s per seed count each seed's own samples over "
            "the shared wall clock, so the aggregate is per seed × stacked. `cv` is the coefficient of "
            "variation of samples/s across seeds, — where there is one timing only (one stack's seeds share "
            "it). `threads × jobs`: torch threads of the trial, and how "
            "many such jobs ran side by side (`--jobs`; each job's share of the cores, measured under "
            "the others' load).", ""]
    if len(noisy):
        out += [f"> **Warning:** samples/s varied by more than {SPREAD_WARNING:.0%} across seeds for "
                f"{len(noisy)} row(s) ({', '.join(sorted(set(noisy['variant'])))}): the machine was busy or "
                "its clock varied; compare speeds only from `bench speed`, which takes ratios in one process.",
                ""]
    busy = throughput[throughput["load_max"] > throughput["threads"] * throughput["jobs"].fillna(1) + 1]
    if len(busy):
        worst = busy.loc[busy["load_max"].idxmax()]
        out += [f"> **Warning:** {len(busy)} row(s) were measured beside other work: the 1-minute load average "
                f"reached {worst['load_max']:.1f} where this run's own threads × jobs were "
                f"{_threads(worst['threads'], worst['jobs'])}; their speeds say little about this machine.", ""]
    out += [tabulate(rows, headers=["dataset", "task", "variant", "device", "n", "stacked", "threads × jobs",
                                    "train samples/s per seed", "cv", "aggregate", "inference samples/s",
                                    "train s"], tablefmt="github"), ""]
    return out


def _stacked(value: Any) -> int:
    return 1 if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)

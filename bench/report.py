"""Stored trials -> trials.csv, significance.csv, throughput.csv, devices.csv, summary.md, plots.

Only draws and writes what ``bench.stats`` computed. Every file is written under a temporary name
and renamed once all are ready, so a kill leaves the previous report or the new one, never a mix.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from tabulate import tabulate  # noqa: E402

from bench import stats  # noqa: E402
from bench.store import TrialStore  # noqa: E402
from bench.suites import ALL_VARIANTS  # noqa: E402
from ncf_core.tasks import TASKS, higher_is_better  # noqa: E402

BASE_COLUMNS = ["dataset", "task", "variant", "device", "seed", "status", "epochs", "best_epoch",
                "train_seconds", "train_samples_per_s", "infer_samples_per_s", "stacked_seeds", "threads", "jobs"]
SPREAD_WARNING = 0.25  # coefficient of variation of samples/s across seeds that suggests a busy machine


def trials_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {c: r.get(c) for c in BASE_COLUMNS}
        row.update(r.get("metrics") or {})
        row["error"] = r.get("error", "")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=BASE_COLUMNS) if not rows else pd.DataFrame(rows)
    for c in BASE_COLUMNS:
        if c not in frame:
            frame[c] = None
    metric_cols = [c for c in frame.columns if c not in BASE_COLUMNS and c != "error"]
    ordered = [c for task in TASKS.values() for c in metric_cols if task.owns(c)]
    ordered = list(dict.fromkeys(ordered)) + sorted(set(metric_cols) - set(ordered))
    if "error" not in frame:
        frame["error"] = ""
    return frame[BASE_COLUMNS + ordered + ["error"]]


def metrics_of(frame: pd.DataFrame, task: str) -> list[str]:
    """The task's reported metrics present in ``frame``, primary first."""
    spec = TASKS[task]
    named = [m for m in spec.metric_names(_k(frame)) if m in frame and frame[m].notna().any()]
    return named + [c for c in frame.columns if spec.owns(c) and c not in named and frame[c].notna().any()]


def primary_of(frame: pd.DataFrame, task: str) -> str:
    return TASKS[task].primary_metric(_k(frame))


def _k(frame: pd.DataFrame) -> int:
    for c in frame.columns:
        if "@" in c:
            return int(c.split("@")[1])
    return 10


def better(metric: str) -> str:
    return "max" if higher_is_better(metric) else "min"


def canonical_order(records: list[dict[str, Any]], run_dir: Path) -> list[dict[str, Any]]:
    """Trials in the run's order, not the order they finished (parallel jobs finish in any order):
    data sets as the manifest lists them, then task, variant (baselines last), device and seed."""
    try:
        listed = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")).get("datasets") or []
    except (OSError, ValueError):
        listed = []
    first_seen = list(dict.fromkeys([*listed, *(r["dataset"] for r in records)]))
    tasks = list(dict.fromkeys(r["task"] for r in records))
    variants = list(ALL_VARIANTS)

    def key(r: dict[str, Any]) -> tuple:
        v = r["variant"]
        return (first_seen.index(r["dataset"]), tasks.index(r["task"]),
                variants.index(v) if v in variants else len(variants), v, r["device"], r["seed"])

    return sorted(records, key=key)


def write_report(run_dir: Path) -> dict[str, Path]:
    """Rebuild every table and plot from the stored trials (``bench report`` calls only this)."""
    run_dir = Path(run_dir)
    store = TrialStore(run_dir)
    records = canonical_order(store.records(), run_dir)
    if not records:
        raise FileNotFoundError(f"{run_dir / 'trials.jsonl'}: no stored trials")
    frame = trials_frame(records)
    staged: dict[str, Any] = {"trials.csv": frame}

    sig_parts, fried_parts, dev_parts = [], [], []
    for task, group in frame.groupby("task", sort=False):
        names = metrics_of(group, task)
        sig_parts.append(stats.significance(group, names))
        fried_parts.append(stats.friedman(group, names))
        dev_parts.append(stats.device_equivalence(group, names))
    sig = pd.concat(sig_parts, ignore_index=True)
    friedman = pd.concat(fried_parts, ignore_index=True)
    devices = pd.concat(dev_parts, ignore_index=True)
    throughput = throughput_table(frame)
    staged["significance.csv"] = sig
    staged["throughput.csv"] = throughput
    if not devices.empty:
        staged["devices.csv"] = devices
    budgets = budget_lines(records)
    stand_ins = {r["dataset"]: (r.get("config") or {}).get("data", {}).get("stands_in_for") for r in records}
    stand_ins = {k: v for k, v in stand_ins.items() if v}
    anomalies = {r["dataset"]: (r.get("config") or {}).get("data", {}).get("file_anomalies") for r in records}
    anomalies = {k: v for k, v in anomalies.items() if v}
    plots = write_plots(records, frame, run_dir)  # each plot is itself written to a temporary name first
    staged["summary.md"] = summary_markdown(frame, sig, friedman, throughput, devices, plots, stand_ins,
                                            store.skipped, budgets, anomalies)
    paths = {}
    tmps = []
    for name, content in staged.items():
        path = run_dir / name
        tmp = run_dir / f".{name}.tmp"
        if isinstance(content, pd.DataFrame):
            content.to_csv(tmp, index=False)
        else:
            tmp.write_text(content, encoding="utf-8")
        tmps.append((tmp, path))
        paths[name] = path
    for tmp, path in tmps:
        os.replace(tmp, path)
    return paths


def throughput_table(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[(frame["status"] == "ok") & ~frame["variant"].str.startswith("baseline-")]
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "task", "variant", "device", "n"])
    ok = ok.assign(**{c: ok.get(c, np.nan) for c in ("threads", "jobs")})  # older stores lack them
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
    ).reset_index()
    agg["train_cv"] = agg["train_samples_per_s_std"] / agg["train_samples_per_s_mean"]
    return agg


def _threads(threads: Any, jobs: Any) -> str:
    if pd.isna(threads):
        return "—"  # stored before the harness recorded it
    return f"{int(threads)} × {1 if pd.isna(jobs) else int(jobs)}"


def _fmt(x: float, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    return "—" if x is None or math.isnan(x) else (f"{x:.2g}" if x >= 1e-4 else "<1e-4")


def metric_table(group: pd.DataFrame, names: list[str], sig: pd.DataFrame) -> tuple[str, dict[str, str | None]]:
    """mean ± std per variant, the best learned variant bolded (never one significantly below a
    baseline); a variant is flagged only where a baseline is significantly better (Holm), and said
    to be indistinguishable where its mean is worse but not significantly."""
    ok = group[group["status"] == "ok"]
    is_base = ok["variant"].str.startswith("baseline-")
    means = ok.groupby("variant", sort=False)[names].mean()
    stds = ok.groupby("variant", sort=False)[names].std()
    counts = ok.groupby("variant", sort=False)["seed"].count()
    learned = list(dict.fromkeys(ok[~is_base]["variant"]))
    bases = list(dict.fromkeys(ok[is_base]["variant"]))
    below = {(v, m): [b for b in bases if stats.significantly_worse(sig, m, v, b)] for v in learned for m in names}
    best: dict[str, str | None] = {}
    for m in names:
        eligible = [v for v in learned if not below[(v, m)] and not math.isnan(means.loc[v, m])]
        pick = means.loc[eligible, m] if eligible else pd.Series(dtype=float)
        best[m] = None if pick.empty else (pick.idxmax() if better(m) == "max" else pick.idxmin())
    rows = []
    for variant in learned + bases:
        row = [variant, int(counts[variant])]
        for m in names:
            cell = f"{_fmt(means.loc[variant, m])} ± {_fmt(stds.loc[variant, m])}"
            row.append(f"**{cell}**" if variant == best[m] else cell)
        if variant in bases:
            note = "reference"
        else:
            primary = names[0]
            sig_below = below[(variant, primary)]
            worse = [b for b in bases if not math.isnan(means.loc[b, primary])
                     and (means.loc[variant, primary] < means.loc[b, primary] if better(primary) == "max"
                          else means.loc[variant, primary] > means.loc[b, primary])]
            if sig_below:
                note = f"✗ significantly below {', '.join(sig_below)}"
            elif worse:
                note = f"not distinguishable from {', '.join(worse)}"
            else:
                note = ""
        row.append(note)
        rows.append(row)
    headers = ["variant", "n", *[f"{m} {'↑' if better(m) == 'max' else '↓'}" for m in names], "note"]
    return tabulate(rows, headers=headers, tablefmt="github"), best


def verdict(dataset: str, metric: str, best: str | None, sig: pd.DataFrame) -> str:
    if best is None:
        return (f"On {dataset}, no variant can be called best on {metric}: every one is significantly below "
                "a baseline (or none succeeded).")
    rel = sig[(sig["metric"] == metric) & ((sig["variant_a"] == best) | (sig["variant_b"] == best))]
    rel = rel[~rel["variant_a"].str.startswith("baseline-") & ~rel["variant_b"].str.startswith("baseline-")]
    if rel.empty:
        return f"On {dataset}, **{best}** has the best {metric} (no paired comparison available)."
    not_sig = rel[~rel["significant"]]
    if not_sig.empty:
        return (f"On {dataset}, **{best}** has the best {metric} and beats every other variant "
                f"significantly (Holm-adjusted paired t, p < 0.05).")
    others = [b if a == best else a for a, b in zip(not_sig["variant_a"], not_sig["variant_b"])]
    worst_p = not_sig["holm_p"].max()
    return (f"On {dataset}, **{best}** has the best {metric}, but its lead over {', '.join(others)} "
            f"is not significant (Holm p up to {_p(worst_p)}).")


def agreement_line(group: pd.DataFrame, full: str, sampled: str) -> str | None:
    """Krichene & Rendle (2020): do sampled and full-ranking metrics order the variants alike?"""
    ok = group[(group["status"] == "ok") & ~group["variant"].str.startswith("baseline-")]
    if full not in ok or sampled not in ok or ok["variant"].nunique() < 2:
        return None
    means = ok.groupby("variant", sort=False)[[full, sampled]].mean()
    tau, p, flips = stats.order_agreement(means[sampled], means[full])
    order = lambda m: " > ".join(means[m].sort_values(ascending=False).index)  # noqa: E731
    head = (f"Sampled vs full ranking (Krichene & Rendle 2020): Kendall's τ = {_fmt(tau, 2)} (p = {_p(p)}) "
            f"between the orders by {sampled} on sampled negatives ({order(sampled)}) and by {full} over all "
            f"unseen items ({order(full)}).")
    if not flips:
        return head + " The two orders agree."
    return head + " Pairs that flip: " + "; ".join(f"{a} vs {b}" for a, b in flips) + "."


def budget_lines(records: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Per data set, one line on how the variants were tuned: the comparison is only fair if equally."""
    out = {}
    for key in dict.fromkeys((r["dataset"], r["task"]) for r in records):
        learned = [r for r in records if (r["dataset"], r["task"]) == key and not r["variant"].startswith("baseline-")]
        tunings = {json.dumps((r.get("config") or {}).get("tuning"), sort_keys=True) for r in learned}
        if tunings == {"null"}:
            out[key] = ("Tuning: none — every variant runs at the paper's default settings; untuned comparisons "
                        "can mislead (Rendle et al. 2020), see `bench run --tune N`.")
        elif len(tunings) == 1:
            t = json.loads(tunings.pop())
            out[key] = (f"Tuning: every variant had the same budget — {t['budget']} Optuna trials ({t['sampler']}, "
                        f"{t['pruner']} pruner) on the validation split of seed {t['split_seed']}, none of the "
                        "evaluation seeds; best settings and study times in manifest.json.")
        else:
            out[key] = "Tuning: **unequal** — the variants of this data set were tuned differently."
    return out


def summary_markdown(frame: pd.DataFrame, sig: pd.DataFrame, friedman: pd.DataFrame, throughput: pd.DataFrame,
                     devices: pd.DataFrame, plots: list[Path], stand_ins: dict[str, str] | None = None,
                     skipped: list[int] | None = None, budgets: dict[tuple[str, str], str] | None = None,
                     anomalies: dict[str, list[str]] | None = None) -> str:
    out = ["# Benchmark summary", ""]
    for label, real in (stand_ins or {}).items():
        out += [f"> **Stand-in data:** `{real}` was not found; **{label}** is synthetic data run in its place. "
                f"Its numbers say nothing about {real}.", ""]
    for label, lines in (anomalies or {}).items():
        out += [f"> **Published files of {label}**, read as their reference code reads them:", ">",
                *[f"> - {line}" for line in lines], ""]
    if skipped:
        out += [f"> **Warning:** trials.jsonl lines {skipped[:20]} could not be read and were skipped.", ""]
    failed = frame[frame["status"] != "ok"]
    if len(failed):
        out += [f"**{len(failed)} trial(s) failed:**", "",
                tabulate(failed[["dataset", "variant", "device", "seed", "status", "error"]],
                         headers="keys", tablefmt="github", showindex=False), ""]
    ok_all = frame[frame["status"] == "ok"]
    for (dataset, task, device), group in frame.groupby(["dataset", "task", "device"], sort=False):
        if group["variant"].str.startswith("baseline-").all():
            continue
        names = metrics_of(group[group["status"] == "ok"], task)
        out += [f"## {dataset} — {task} — {device}", ""]
        if not names or group[(group["status"] == "ok") & ~group["variant"].str.startswith("baseline-")].empty:
            out += ["No trial of this data set succeeded on this device: nothing to compare.", ""]
            continue
        group = stats.with_baselines(group, ok_all, dataset, task)
        s = sig[(sig["dataset"] == dataset) & (sig["task"] == task) & (sig["device"] == device)]
        table, best = metric_table(group, names, s)
        primary = primary_of(group, task)
        primary = primary if primary in names else names[0]
        out += [verdict(f"{dataset} ({device})", primary, best.get(primary), s), ""]
        if budgets and (dataset, task) in budgets:
            out += [budgets[(dataset, task)], ""]
        if task == "ranking":
            line = agreement_line(group, primary, primary.removeprefix("full_"))
            if line:
                out += [line, ""]
        fr = friedman[(friedman["dataset"] == dataset) & (friedman["task"] == task)
                      & (friedman["device"] == device) & (friedman["metric"] == primary)]
        sp = s[s["metric"] == primary]
        n = int(sp["n"].max()) if len(sp) else 0
        k = int(fr["k"].iloc[0]) if len(fr) else 0
        if len(fr):
            out += [f"Friedman test across {k} variants on {primary}: "
                    f"p = {_p(float(fr['p'].iloc[0]))} (n = {int(fr['n'].iloc[0])} seeds).", ""]
        if n:
            floor = stats.smallest_p(n, max(k, 2), len(sp))
            out += [f"With n = {n} seeds the exact Wilcoxon test cannot go below p = {_p(floor['wilcoxon'])} "
                    f"({_p(floor['wilcoxon_holm'])} after Holm over {len(sp)} pairs), whatever the effect; "
                    f"Friedman's floor is {_p(floor['friedman'])}. The `sig.` column uses the paired t-test "
                    "(Holm), which has no such floor but assumes roughly normal differences.", ""]
        ra = stats.rank_analysis(stats.seed_table(group, primary), primary)
        if ra is not None:
            out += [_ranks_text(ra, f"{primary}, seeds as blocks"), ""]
        out += [table, ""]
        if len(sp):
            rows = [[r.variant_a, r.variant_b, _fmt(r.diff, 5), f"[{_fmt(r.ci_low, 5)}, {_fmt(r.ci_high, 5)}]",
                     _p(r.t_p), _p(r.wilcoxon_p), _p(r.holm_p), _fmt(r.cohen_dz, 2),
                     "yes" if r.significant else "no"] for r in sp.itertuples()]
            out += [f"Paired differences on {primary} (a − b), by seed:", "",
                    tabulate(rows, headers=["a", "b", "diff", "95% CI", "t p", "Wilcoxon p", "Holm p",
                                            "d_z", "sig."], tablefmt="github"), ""]
    across = ranks_across_datasets(frame)
    for device, ra in across.items():
        out += [f"## Across data sets — {device}", "", _ranks_text(ra, "each data set's primary metric, data sets "
                                                                       "as blocks (means over seeds)"), ""]
    if len(throughput):
        rows = [[r.dataset, r.task, r.variant, r.device, r.n, _stacked(r.stacked_seeds), _threads(r.threads, r.jobs),
                 f"{r.train_samples_per_s_mean:,.0f}", _fmt(r.train_cv, 2),
                 f"{r.train_samples_per_s_mean * _stacked(r.stacked_seeds):,.0f}",
                 f"{r.infer_samples_per_s_mean:,.0f}", f"{r.train_seconds_mean:.1f}"]
                for r in throughput.itertuples()]
        noisy = throughput[throughput["train_cv"] > SPREAD_WARNING]
        out += ["## Throughput", "",
                "Stacked seeds train as one model: samples/s per seed count each seed's own samples over "
                "the shared wall clock, so the aggregate is per seed × stacked. `cv` is the coefficient of "
                "variation of samples/s across seeds. `threads × jobs`: torch threads of the trial, and how "
                "many such jobs ran side by side (`--jobs`; each job's share of the cores, measured under "
                "the others' load).", ""]
        if len(noisy):
            out += [f"> **Warning:** samples/s varied by more than {SPREAD_WARNING:.0%} across seeds for "
                    f"{len(noisy)} row(s) ({', '.join(sorted(set(noisy['variant'])))}): the machine was busy or "
                    "its clock varied; compare speeds only from `bench speed`, which takes ratios in one process.",
                    ""]
        out += [tabulate(rows, headers=["dataset", "task", "variant", "device", "n", "stacked", "threads × jobs",
                                        "train samples/s per seed", "cv", "aggregate", "inference samples/s",
                                        "train s"], tablefmt="github"), ""]
    if len(devices):
        out += ["## CPU vs CUDA (same variant and seed)", "",
                "`equivalent`: yes when a TOST shows the mean difference inside ±margin (p < 0.05); no when a "
                "paired t-test finds a difference; undetermined when neither.", "",
                tabulate(devices, headers="keys", tablefmt="github", showindex=False, floatfmt=".4g"), ""]
    if plots:
        out += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    return "\n".join(out)


def _ranks_text(ra: dict[str, Any], what: str) -> str:
    ranks = ra["ranks"]
    rows = [[i + 1, v, f"{r:.2f}"] for i, (v, r) in enumerate(ranks.items())]
    return (f"Average ranks on {what} (1 = best; Friedman p = {_p(ra['friedman_p'])}, n = {ra['n']}, "
            f"k = {ra['k']}); Nemenyi critical difference at α = 0.05: {ra['cd']:.2f} — variants whose average "
            "ranks differ by less are not distinguishable (the critical-difference diagram links them):\n\n"
            + tabulate(rows, headers=["", "variant", "average rank"], tablefmt="github"))


def ranks_across_datasets(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per device, with three or more data sets: each data set's mean of its primary metric per variant,
    turned so that higher is better, ranked with data sets as blocks."""
    out = {}
    ok = frame[(frame["status"] == "ok") & ~frame["variant"].str.startswith("baseline-")]
    for device, group in ok.groupby("device", sort=False):
        columns = {}
        for (dataset, task), part in group.groupby(["dataset", "task"], sort=False):
            primary = primary_of(part, task)
            if primary in part:
                means = part.groupby("variant", sort=False)[primary].mean()
                columns[f"{dataset} ({task})"] = means if higher_is_better(primary) else -means
        if len(columns) >= 3:
            ra = stats.rank_analysis(pd.DataFrame(columns).T, "score")
            if ra is not None:
                out[device] = ra
    return out


def _cd_plot(ra: dict[str, Any], title: str, path: Path) -> Path:
    import scikit_posthocs as sp

    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * ra["k"]))
    sp.critical_difference_diagram(ra["ranks"], ra["pvalues"], ax=ax, cd=ra["cd"])
    ax.set_title(title, fontsize=9, pad=28)
    fig.tight_layout()
    _save(fig, path)
    return path


def _stacked(value: Any) -> int:
    return 1 if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _save(fig: plt.Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def write_plots(records: list[dict[str, Any]], frame: pd.DataFrame, run_dir: Path) -> list[Path]:
    """Loss curves (mean over seeds) and each seed's metric with the mean and its 95% CI, per data set."""
    paths = []
    learned = [r for r in records if r.get("status") == "ok" and r.get("history")]
    for (dataset, task) in dict.fromkeys((r["dataset"], r["task"]) for r in learned):
        mine = [r for r in learned if r["dataset"] == dataset and r["task"] == task]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
        for variant in dict.fromkeys(r["variant"] for r in mine):
            hist = pd.DataFrame([h | {"seed": r["seed"]} for r in mine if r["variant"] == variant
                                 for h in r["history"]])
            curve = hist.groupby("epoch")[["train_loss", "valid_loss"]].mean()
            axes[0].plot(curve.index, curve["train_loss"], marker=".", label=variant)
            axes[1].plot(curve.index, curve["valid_loss"], marker=".", label=variant)
        loss = TASKS[task].loss
        for ax, part in zip(axes, ("training", "validation")):
            ax.set_title(f"{dataset} ({task}): {part} loss, mean over seeds", fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(loss, fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        path = run_dir / f"loss-{_slug(dataset)}-{task}.png"
        _save(fig, path)
        paths.append(path)

        group = frame[(frame["dataset"] == dataset) & (frame["task"] == task) & (frame["status"] == "ok")]
        names = metrics_of(group, task)[:3]
        if not names:
            continue
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
        variants = list(dict.fromkeys(group["variant"]))
        for ax, m in zip(axes[0], names):
            for x, v in enumerate(variants):
                values = group[group["variant"] == v][m].dropna().to_numpy(float)
                if not len(values):
                    continue
                jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
                ax.scatter(x + jitter, values, s=14, alpha=0.6, color="tab:blue")
                mean, _, low, high = stats.mean_ci(values)
                if not math.isnan(low):
                    ax.errorbar(x, mean, yerr=[[mean - low], [high - mean]], fmt="o", color="black", capsize=4)
                else:
                    ax.plot(x, mean, "o", color="black")
            ax.set_xticks(range(len(variants)), variants, rotation=45, ha="right", fontsize=8)
            ax.set_ylabel(f"{m} ({'higher' if better(m) == 'max' else 'lower'} is better)")
            ax.set_title(f"{dataset} ({task}): {m}\nseeds (dots), mean and 95% CI (black)", fontsize=9)
        fig.tight_layout()
        path = run_dir / f"metrics-{_slug(dataset)}-{task}.png"
        _save(fig, path)
        paths.append(path)
    for (dataset, task, device), group in frame.groupby(["dataset", "task", "device"], sort=False):
        primary = primary_of(group, task)
        ra = stats.rank_analysis(stats.seed_table(group, primary), primary) if primary in group else None
        if ra is not None:
            title = (f"{dataset} ({task}, {device}): average rank on {primary} over {ra['n']} seeds; "
                     f"Nemenyi CD {ra['cd']:.2f}")
            paths.append(_cd_plot(ra, title, run_dir / f"cd-{_slug(dataset)}-{task}-{device}.png"))
    for device, ra in ranks_across_datasets(frame).items():
        title = f"all data sets ({device}): average rank over {ra['n']} data sets; Nemenyi CD {ra['cd']:.2f}"
        paths.append(_cd_plot(ra, title, run_dir / f"cd-all-{device}.png"))
    return paths

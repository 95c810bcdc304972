"""Stored trials -> trials.csv, significance.csv, throughput.csv, summary.md, plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from tabulate import tabulate  # noqa: E402

from bench import stats  # noqa: E402
from bench.store import TrialStore  # noqa: E402

BASE_COLUMNS = ["dataset", "task", "variant", "device", "seed", "status", "epochs", "best_epoch",
                "train_seconds", "train_samples_per_s", "infer_samples_per_s", "stacked_seeds"]
TASK_METRICS = {"rating": ["mae", "rmse", "r2"],
                "ranking": ["hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10", "full_recall@10"]}


def trials_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {c: r.get(c) for c in BASE_COLUMNS}
        row.update(r.get("metrics") or {})
        row["error"] = r.get("error", "")
        rows.append(row)
    frame = pd.DataFrame(rows)
    metric_cols = [c for c in frame.columns if c not in BASE_COLUMNS and c != "error"]
    ordered = [m for ms in TASK_METRICS.values() for m in ms if m in metric_cols]
    ordered += sorted(set(metric_cols) - set(ordered))
    return frame[BASE_COLUMNS + ordered + ["error"]]


def metrics_of(frame: pd.DataFrame, task: str) -> list[str]:
    names = [m for m in TASK_METRICS[task] if m in frame]
    return names + [c for c in frame.columns if c.startswith(("hr@", "ndcg@")) and c not in names
                    and task == "ranking"]


def better(metric: str) -> str:
    return "min" if metric in stats.LOWER_IS_BETTER else "max"


def write_report(run_dir: Path) -> dict[str, Path]:
    """Rebuild every table and plot from the stored trials (``bench report`` calls only this)."""
    run_dir = Path(run_dir)
    records = TrialStore(run_dir).records()
    if not records:
        raise FileNotFoundError(f"{run_dir / 'trials.jsonl'}: no stored trials")
    frame = trials_frame(records)
    paths = {name: run_dir / name for name in
             ("trials.csv", "significance.csv", "throughput.csv", "summary.md")}
    frame.to_csv(paths["trials.csv"], index=False)

    sig_parts, fried_parts, dev_parts = [], [], []
    for task, group in frame.groupby("task", sort=False):
        names = metrics_of(group, task)
        sig_parts.append(stats.significance(group, names))
        fried_parts.append(stats.friedman(group, names))
        dev_parts.append(stats.device_equivalence(group, names))
    sig = pd.concat(sig_parts, ignore_index=True)
    sig.to_csv(paths["significance.csv"], index=False)
    friedman = pd.concat(fried_parts, ignore_index=True)
    devices = pd.concat(dev_parts, ignore_index=True)
    throughput = throughput_table(frame)
    throughput.to_csv(paths["throughput.csv"], index=False)
    if not devices.empty:
        paths["devices.csv"] = run_dir / "devices.csv"
        devices.to_csv(paths["devices.csv"], index=False)
    plots = write_plots(records, frame, run_dir)
    paths["summary.md"].write_text(summary_markdown(frame, sig, friedman, throughput, devices, plots))
    return paths


def throughput_table(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[(frame["status"] == "ok") & ~frame["variant"].str.startswith("baseline-")]
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "task", "variant", "device", "n"])
    agg = ok.groupby(["dataset", "task", "variant", "device"], sort=False).agg(
        n=("seed", "count"),
        train_samples_per_s_mean=("train_samples_per_s", "mean"),
        train_samples_per_s_std=("train_samples_per_s", "std"),
        infer_samples_per_s_mean=("infer_samples_per_s", "mean"),
        infer_samples_per_s_std=("infer_samples_per_s", "std"),
        train_seconds_mean=("train_seconds", "mean"),
        stacked_seeds=("stacked_seeds", "max"),
    )
    return agg.reset_index()


def _fmt(x: float, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    return "—" if math.isnan(x) else (f"{x:.2g}" if x >= 1e-4 else "<1e-4")


def metric_table(group: pd.DataFrame, names: list[str]) -> tuple[str, dict[str, str]]:
    """mean ± std per variant, best learned variant bolded, variants below the best baseline flagged."""
    ok = group[group["status"] == "ok"]
    learned = ~ok["variant"].str.startswith("baseline-")
    means = ok.groupby("variant", sort=False)[names].mean()
    stds = ok.groupby("variant", sort=False)[names].std()
    counts = ok.groupby("variant", sort=False)["seed"].count()
    best = {}
    rows = []
    learned_names = list(dict.fromkeys(ok[learned]["variant"]))
    base_names = list(dict.fromkeys(ok[~learned]["variant"]))
    for m in names:
        pick = means.loc[learned_names, m] if learned_names else means[m]
        best[m] = pick.idxmin() if better(m) == "min" else pick.idxmax()
    for variant in learned_names + base_names:
        row = [variant, int(counts[variant])]
        below = False
        for m in names:
            cell = f"{_fmt(means.loc[variant, m])} ± {_fmt(stds.loc[variant, m])}"
            if variant == best[m]:
                cell = f"**{cell}**"
            if base_names and variant in learned_names:
                base_best = (means.loc[base_names, m].min() if better(m) == "min"
                             else means.loc[base_names, m].max())
                worse = means.loc[variant, m] > base_best if better(m) == "min" \
                    else means.loc[variant, m] < base_best
                below |= bool(worse)
            row.append(cell)
        row.append("✗ below a baseline" if below else ("reference" if variant in base_names else ""))
        rows.append(row)
    headers = ["variant", "n", *[f"{m} {'↓' if better(m) == 'min' else '↑'}" for m in names], "note"]
    return tabulate(rows, headers=headers, tablefmt="github"), best


def verdict(dataset: str, metric: str, best: str, sig: pd.DataFrame) -> str:
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


def summary_markdown(frame: pd.DataFrame, sig: pd.DataFrame, friedman: pd.DataFrame,
                     throughput: pd.DataFrame, devices: pd.DataFrame, plots: list[Path]) -> str:
    out = ["# Benchmark summary", ""]
    failed = frame[frame["status"] != "ok"]
    if len(failed):
        out += [f"**{len(failed)} trial(s) failed:**", "",
                tabulate(failed[["dataset", "variant", "device", "seed", "status", "error"]],
                         headers="keys", tablefmt="github", showindex=False), ""]
    for (dataset, task, device), group in frame.groupby(["dataset", "task", "device"], sort=False):
        if group["variant"].str.startswith("baseline-").all():
            continue
        names = metrics_of(group, task)
        group = stats.with_baselines(group, frame[frame["status"] == "ok"], dataset, task)
        table, best = metric_table(group, names)
        primary = names[1] if task == "rating" else names[0]  # RMSE for rating, HR@10 for ranking
        s = sig[(sig["dataset"] == dataset) & (sig["task"] == task) & (sig["device"] == device)]
        out += [f"## {dataset} — {task} — {device}", "", verdict(f"{dataset} ({device})", primary,
                best[primary], s), ""]
        fr = friedman[(friedman["dataset"] == dataset) & (friedman["device"] == device)
                      & (friedman["metric"] == primary)]
        if len(fr):
            out += [f"Friedman test across {int(fr['k'].iloc[0])} variants on {primary}: "
                    f"p = {_p(float(fr['p'].iloc[0]))} (n = {int(fr['n'].iloc[0])} seeds).", ""]
        out += [table, ""]
        sp = s[s["metric"] == primary]
        if len(sp):
            rows = [[r.variant_a, r.variant_b, _fmt(r.diff, 5), f"[{_fmt(r.ci_low, 5)}, {_fmt(r.ci_high, 5)}]",
                     _p(r.t_p), _p(r.wilcoxon_p), _p(r.holm_p), _fmt(r.cohen_dz, 2),
                     "yes" if r.significant else "no"] for r in sp.itertuples()]
            out += [f"Paired differences on {primary} (a − b), by seed:", "",
                    tabulate(rows, headers=["a", "b", "diff", "95% CI", "t p", "Wilcoxon p", "Holm p",
                                            "d_z", "sig."], tablefmt="github"), ""]
    if len(throughput):
        rows = [[r.dataset, r.variant, r.device, r.n, _stacked(r.stacked_seeds), f"{r.train_samples_per_s_mean:,.0f}",
                 f"{r.train_samples_per_s_mean * _stacked(r.stacked_seeds):,.0f}",
                 f"{r.infer_samples_per_s_mean:,.0f}", f"{r.train_seconds_mean:.1f}"]
                for r in throughput.itertuples()]
        out += ["## Throughput", "",
                "Stacked seeds train as one model: samples/s per seed count each seed's own samples over "
                "the shared wall clock, so the aggregate is per seed × stacked.", "",
                tabulate(rows, headers=["dataset", "variant", "device", "n", "stacked", "train samples/s per seed",
                                        "aggregate", "inference samples/s", "train s"], tablefmt="github"), ""]
    if len(devices):
        out += ["## CPU vs CUDA (same variant and seed)", "",
                tabulate(devices, headers="keys", tablefmt="github", showindex=False, floatfmt=".4g"), ""]
    if plots:
        out += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    return "\n".join(out)


def _stacked(value: Any) -> int:
    return 1 if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def write_plots(records: list[dict[str, Any]], frame: pd.DataFrame, run_dir: Path) -> list[Path]:
    """Loss curves (mean over seeds) and metric distributions across seeds, per data set."""
    paths = []
    learned = [r for r in records if r.get("status") == "ok" and r.get("history")]
    for (dataset, task) in dict.fromkeys((r["dataset"], r["task"]) for r in learned):
        mine = [r for r in learned if r["dataset"] == dataset and r["task"] == task]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
        for variant in dict.fromkeys(r["variant"] for r in mine):
            hist = pd.DataFrame([h | {"seed": r["seed"]} for r in mine if r["variant"] == variant
                                 for h in r["history"]])
            curve = hist.groupby("epoch")[["train_loss", "valid_loss"]].mean()
            axes[0].plot(curve.index, curve["train_loss"], label=variant)
            axes[1].plot(curve.index, curve["valid_loss"], label=variant)
        axes[0].set_title(f"{dataset}: training loss")
        axes[1].set_title(f"{dataset}: validation loss")
        for ax in axes:
            ax.set_xlabel("epoch")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        path = run_dir / f"loss-{dataset}-{task}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)

        group = frame[(frame["dataset"] == dataset) & (frame["task"] == task) & (frame["status"] == "ok")]
        names = metrics_of(group, task)[:3]
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4))
        for ax, m in zip(axes if len(names) > 1 else [axes], names):
            variants = list(dict.fromkeys(group["variant"]))
            ax.boxplot([group[group["variant"] == v][m].dropna() for v in variants])
            ax.set_xticks(range(1, len(variants) + 1), variants, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{dataset}: {m} across seeds")
        fig.tight_layout()
        path = run_dir / f"metrics-{dataset}-{task}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths

"""Stored trials -> the report: trials.csv, significance.csv (paired by seed), significance_users.csv
(paired by user, from the per-user files), throughput.csv, devices.csv,
summary.md and the plots, in ``<run>/report/``.

Renders what ``bench.analysis.stats`` computed and decided. Every file of a report is written into a
new folder, and ``report`` (a link to the current one) is then swapped to it in one rename, so a
kill at any instant leaves the previous report or the new one, whole.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench import faults, layout
from bench.analysis import stats
from bench.analysis.budget import UNEQUAL, budget_lines
from bench.analysis.frame import cutoff, metrics_of, primary_of, trials_frame
from bench.analysis.latex import latex_tables
from bench.analysis.plots import write_plots
from bench.analysis.references import ncf_vs_references, published_table
from bench.analysis.throughput import SPREAD_WARNING, throughput_lines, throughput_table  # noqa: F401 (re-exported)
from bench.analysis.tuning import chosen_lines, load_studies, structures_tried, write_tuning_plots
from bench.analysis.users import user_lines
from bench.run.store import TrialStore
from bench.variants import ALL_VARIANTS, BASELINE, REFERENCE_VARIANTS
from ncf_core import DataError
from ncf_core.tasks import TASKS, higher_is_better

# What a report folder holds besides its plots (every report before the list of written files).
REPORT_NAMES = frozenset({"trials.csv", "significance.csv", "significance_users.csv", "throughput.csv", "devices.csv",
                          "summary.md", "tables.tex"})
DRAFT_NAME = re.compile(re.escape(layout.REPORT_DRAFT) + r"[0-9a-f]{12}(\.link)?")  # what write_report names
def better(metric: str) -> str:
    return "max" if higher_is_better(metric) else "min"


def canonical_order(records: list[dict[str, Any]], run_dir: Path) -> list[dict[str, Any]]:
    """Trials in the run's order, not the order they finished (parallel jobs finish in any order):
    data sets as the manifest lists them, then task, variant (baselines last), device and seed."""
    try:
        listed = json.loads((run_dir / layout.MANIFEST).read_text(encoding="utf-8")).get("datasets") or []
        listed = [d for d in listed if isinstance(d, str)]
    except (OSError, ValueError, AttributeError, TypeError):  # no manifest, or not one this harness wrote
        listed = []
    first_seen = list(dict.fromkeys([*listed, *(r["dataset"] for r in records)]))
    tasks = list(dict.fromkeys(r["task"] for r in records))
    variants = list(ALL_VARIANTS)

    def key(r: dict[str, Any]) -> tuple:
        v = r["variant"]
        return (first_seen.index(r["dataset"]), tasks.index(r["task"]),
                variants.index(v) if v in variants else len(variants), v, r["device"], r["seed"])

    return sorted(records, key=key)


def write_report(run_dir: Path, to: Path | None = None) -> dict[str, Path]:
    """Rebuild every table and plot from the stored trials into a new folder and swap it in as
    ``run_dir/report``, or as ``to``: an interim report that only reads the run folder, so it can be
    written while a run goes on appending to it."""
    run_dir = Path(run_dir)
    store = TrialStore(run_dir)
    records = canonical_order(store.records(), run_dir)
    if not records:
        raise DataError(store.path, "no readable trials to report" + (
            f" (lines {store.skipped[:10]} could not be read)" if store.skipped else ""))
    current = Path(to) if to is not None else run_dir / layout.REPORT
    _check_own(current)
    home = current.parent  # drafts live beside the report: the swap is one rename on one file system
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(home, f"cannot make the report's folder ({err.strerror or err})") from None
    folder = home / f"{layout.REPORT_DRAFT}{uuid.uuid4().hex[:12]}"
    try:
        folder.mkdir()
        paths = _write(records, store.skipped, folder, store.per_user(records),
                       run_dir / layout.TUNING / layout.STUDIES)
        (folder / layout.REPORT_FILES).write_text("\n".join(sorted(p.name for p in folder.iterdir())) + "\n")
        link = home / f"{layout.REPORT_DRAFT}{uuid.uuid4().hex[:12]}.link"
        os.symlink(folder.name, link)
        faults.point("report-swap")  # written and linked, not yet swapped in
        if current.is_dir() and not current.is_symlink():  # a copy of the folder made the link a folder
            if not _exchange(link, current):  # no atomic exchange here: one moment without a report
                current.rename(home / f"{layout.REPORT_DRAFT}{uuid.uuid4().hex[:12]}")
                os.replace(link, current)
        else:
            os.replace(link, current)  # the swap: one rename
    except OSError as err:  # a full disk, a folder that takes no new files: the last whole report stays
        shutil.rmtree(folder, ignore_errors=True)
        raise DataError(current, f"cannot write the report ({err.strerror or err})") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    for old in home.glob(f"{layout.REPORT_DRAFT}*"):  # earlier reports, and any a kill left half-written
        if old.name != folder.name and DRAFT_NAME.fullmatch(old.name):  # only names the harness makes
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() else old.unlink()
    return {name: current / path.name for name, path in paths.items()}


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux's renameat2 with RENAME_EXCHANGE): a folder and the link
    that replaces it, with no moment where neither is there. False where the system has no such call."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE
    return renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) == 0


def _check_own(current: Path) -> None:
    """The report about to be replaced holds only files the harness wrote there (its list, or for a
    report written before there was one, the names reports have): a user's file in it is refused,
    never removed with it."""
    if not current.is_dir():
        if current.is_symlink() or not current.exists():
            return  # a dangling link: nothing to lose
        raise DataError(current, "is a file, not the harness's report folder; move it out of the run folder")
    written = current / layout.REPORT_FILES
    try:
        names = {p.name for p in current.iterdir()}
        own = set(written.read_text(encoding="utf-8").split()) | {layout.REPORT_FILES} if written.is_file() else {
            n for n in names if n in REPORT_NAMES or n.endswith(".png")}
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(current, f"cannot read the report folder ({getattr(err, 'strerror', err)})") from None
    foreign = sorted(names - own)
    if foreign:
        raise DataError(current / foreign[0], "was not written by bench, and the report is rebuilt whole: "
                                              "move it out of the report folder")


def _write(records: list[dict[str, Any]], skipped: list[int], folder: Path, per_user: pd.DataFrame,
           studies_db: Path) -> dict[str, Path]:
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
    staged["significance_users.csv"] = users = stats.user_significance(
        per_user, {task: metrics_of(group, task) for task, group in frame.groupby("task", sort=False)})
    staged["throughput.csv"] = throughput
    staged["tables.tex"] = latex_tables(frame, sig, metrics_of, primary_of)
    if not devices.empty:
        staged["devices.csv"] = devices
    stand_ins = {r["dataset"]: (r.get("config") or {}).get("data", {}).get("stands_in_for") for r in records}
    anomalies = {r["dataset"]: (r.get("config") or {}).get("data", {}).get("file_anomalies") for r in records}
    studies = load_studies(studies_db, list(dict.fromkeys((r["dataset"], r["task"], r["variant"]) for r in records)))
    plots = write_plots(records, frame, folder, metrics_of, primary_of) + write_tuning_plots(studies, folder)
    faults.point("report-file")
    budgets = budget_lines(records, {key: structures_tried(by) for key, by in studies.items()})
    staged["summary.md"] = summary_markdown(frame, sig, friedman, throughput, devices, plots,
                                            {k: v for k, v in stand_ins.items() if v}, skipped, budgets,
                                            {k: v for k, v in anomalies.items() if v}, records, users,
                                            {key: chosen_lines(by) for key, by in studies.items()})
    paths = {}
    for name, content in staged.items():
        path = folder / name
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=False)
        else:
            path.write_text(content, encoding="utf-8")
        paths[name] = path
        faults.point("report-file")
    return paths


def _fmt(x: float, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    return "—" if x is None or math.isnan(x) else (f"{x:.2g}" if x >= 1e-4 else "<1e-4")


def metric_table(group: pd.DataFrame, names: list[str], sig: pd.DataFrame) -> tuple[str, dict[str, str | None]]:
    """mean ± std per variant, the best (``stats.standings``) bolded; a variant is flagged where a
    baseline is significantly better (Holm), and said to be indistinguishable where its mean is worse
    but not significantly."""
    ok = group[group["status"] == "ok"]
    means = ok.groupby("variant", sort=False)[names].mean()
    stds = ok.groupby("variant", sort=False)[names].std()
    counts = ok.groupby("variant", sort=False)["seed"].count()
    stand = stats.standings(group, names, sig)
    best = stand["best"]
    top = {m: (means[m].idxmax() if better(m) == "max" else means[m].idxmin()) if means[m].notna().any() else None
           for m in names}  # bold: the best mean, baselines included (the verdict's best is a learned variant)
    rows = []
    for variant in stand["learned"] + stand["baselines"]:
        row = [variant, int(counts[variant])]
        for m in names:
            cell = f"{_fmt(means.loc[variant, m])} ± {_fmt(stds.loc[variant, m])}"
            row.append(f"**{cell}**" if variant == top[m] else cell)
        note = "reference" if variant in stand["baselines"] else ""
        tag = "reference baseline" if variant in REFERENCE_VARIANTS else ""
        if variant in stand["learned"]:
            below, level = stand["below"][(variant, names[0])], stand["level_with"][variant]
            above = [b for b in stand["baselines"] if stats.significantly_worse(sig, names[0], b, variant)]
            fixed = [b for b in level if stats.untestable(sig, names[0], variant, b)]
            level = [b for b in level if b not in fixed]
            note = "; ".join(x for x in (tag, f"✗ significantly below {', '.join(below)}" * bool(below),
                                         f"not distinguishable from {', '.join(level)}" * bool(level),
                                         f"significantly above {', '.join(above)}" * bool(above),
                                         f"the same difference at every seed from {', '.join(fixed)}: no "
                                         "per-seed test (see by user)" * bool(fixed)) if x)
        row.append(note)
        rows.append(row)
    headers = ["variant", "n", *[f"{m} {'↑' if better(m) == 'max' else '↓'}" for m in names], "note"]
    return tabulate(rows, headers=headers, tablefmt="github"), best


def verdict(dataset: str, metric: str, best: str | None, sig: pd.DataFrame) -> str:
    lead = stats.lead(best, metric, sig)
    if lead["kind"] == "none":
        return (f"On {dataset}, no variant can be called best on {metric}: every one is significantly below "
                "a baseline (or none succeeded).")
    if lead["kind"] == "alone":
        return f"On {dataset}, **{best}** has the best {metric} (no paired comparison available)."
    if lead["kind"] == "all":
        return (f"On {dataset}, **{best}** has the best {metric} and beats every other variant "
                f"significantly (Holm-adjusted paired t, p < 0.05).")
    return (f"On {dataset}, **{best}** has the best {metric}, but its lead over {', '.join(lead['others'])} "
            f"is not significant (Holm p up to {_p(lead['worst_p'])}).")


def agreement_line(group: pd.DataFrame, full: str, sampled: str) -> str | None:
    """Krichene & Rendle (2020): do sampled and full-ranking metrics order the variants alike?"""
    ok = group[(group["status"] == "ok") & ~group["variant"].str.startswith(BASELINE)]
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


def summary_markdown(frame: pd.DataFrame, sig: pd.DataFrame, friedman: pd.DataFrame, throughput: pd.DataFrame,
                     devices: pd.DataFrame, plots: list[Path], stand_ins: dict[str, str] | None = None,
                     skipped: list[int] | None = None, budgets: dict[tuple[str, str], str] | None = None,
                     anomalies: dict[str, list[str]] | None = None,
                     records: list[dict[str, Any]] | None = None, users: pd.DataFrame | None = None,
                     chosen: dict[tuple[str, str], list[str]] | None = None) -> str:
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
        if group["variant"].str.startswith(BASELINE).all():
            continue
        names = metrics_of(group[group["status"] == "ok"], task)
        out += [f"## {dataset} — {task} — {device}", ""]
        if not names or group[(group["status"] == "ok") & ~group["variant"].str.startswith(BASELINE)].empty:
            out += ["No trial of this data set succeeded on this device: nothing to compare.", ""]
            continue
        group = stats.with_baselines(group, ok_all, dataset, task)
        s = sig[(sig["dataset"] == dataset) & (sig["task"] == task) & (sig["device"] == device)]
        table, best = metric_table(group, names, s)
        primary = primary_of(group, task)
        primary = primary if primary in names else names[0]
        mine = None if users is None else users[(users["dataset"] == dataset) & (users["task"] == task)
                                                & (users["device"] == device)]
        against = ncf_vs_references(group, primary, s, mine)  # does any NCF variant beat a tuned simple method?
        said = verdict(f"{dataset} ({device})", primary, best.get(primary), s)
        if budgets and budgets.get((dataset, task), "").startswith(UNEQUAL):
            said += (" The variants' settings were not chosen alike (below): this compares settings as much as "
                     "models.")
        out += [said, ""] + [against, ""] * bool(against)
        if budgets and (dataset, task) in budgets:
            out += [budgets[(dataset, task)], ""]
        out += (chosen or {}).get((dataset, task), [])
        twin = TASKS[task].twin_metric(cutoff(group))
        line = agreement_line(group, primary, twin) if twin else None
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
            pairs = int((sp["family"] == "ncf").sum()) or len(sp)  # Holm's family the verdicts rest on
            floor = stats.smallest_p(n, max(k, 2), pairs)
            out += [f"With n = {n} seeds the exact Wilcoxon test cannot go below p = {_p(floor['wilcoxon'])} "
                    f"({_p(floor['wilcoxon_holm'])} after Holm over {pairs} pairs), whatever the effect; "
                    f"Friedman's floor is {_p(floor['friedman'])}. The `sig.` column uses the paired t-test "
                    "(Holm), which has no such floor but assumes roughly normal differences. Holm's family: "
                    "the pairs with an NCF variant in them (variants with each other and with each baseline); "
                    "the baselines' pairs among themselves are adjusted apart and do not dilute it.", ""]
        ra = stats.rank_analysis(stats.seed_table(group, primary), primary)
        if ra is not None:
            out += [_ranks_text(ra, f"{primary}, seeds as blocks"), ""]
        out += ["Cells: mean ± sample standard deviation over the n seeds; bold: the best mean of each metric, "
                "baselines included; notes compare each variant with the baselines on the primary metric (paired "
                "t over seeds, Holm).", "", table, ""]
        if mine is not None and len(mine):
            out += user_lines(s, mine, primary)
        out += published_table(group, dataset, records or [])
        if len(sp):
            rows = [[r.variant_a, r.variant_b, _fmt(r.diff, 5), f"[{_fmt(r.ci_low, 5)}, {_fmt(r.ci_high, 5)}]",
                     _p(r.t_p), _p(r.wilcoxon_p), _p(r.holm_p), _fmt(r.cohen_dz, 2),
                     "yes" if r.significant else "no"] for r in sp.itertuples()]
            out += [f"Paired differences on {primary} (a − b), by seed:", "",
                    tabulate(rows, headers=["a", "b", "diff", "95% CI", "t p", "Wilcoxon p", "Holm p",
                                            "d_z", "sig."], tablefmt="github"), ""]
    across = stats.ranks_across_datasets(frame, primary_of)
    for device, ra in across.items():
        out += [f"## Across data sets — {device}", "", _ranks_text(ra, "each data set's primary metric, data sets "
                                                                       "as blocks (means over seeds)"), ""]
    out += throughput_lines(throughput)
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
            "ranks differ by less are not distinguishable (the critical-difference diagram links them). Both can "
            "hold of one pair: the paired t-test compares two variants' values seed by seed, while the Nemenyi "
            "test compares ranks among all k variants at once and is the more conservative, so a pair can be "
            "significant by t and still be linked in the diagram:\n\n"
            + tabulate(rows, headers=["", "variant", "average rank"], tablefmt="github"))

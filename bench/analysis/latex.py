"""``report/tables.tex``: the tables a paper prints, in booktabs.

One table per (data set, device): every variant and baseline as a row, each metric as mean ± sample
standard deviation over seeds, the best mean of each metric in bold (baselines included: a variant
is never bolded while a baseline does better), and a star on each mean that differs from the best
by the per-seed paired t-test under Holm, the family being every pair of the table's metric, as in
``significance.csv``. Then one table of the primary metric across data sets. Needs
``\\usepackage{booktabs}``.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from bench.analysis.stats import ALPHA, with_baselines
from ncf_core.tasks import higher_is_better

SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    return "".join(SPECIAL.get(c, c) for c in str(text))


def _cell(values: pd.Series, bold: bool, star: bool) -> str:
    values = values.dropna()
    if values.empty:
        return "--"
    std = values.std(ddof=1) if len(values) > 1 else float("nan")
    text = f"{values.mean():.4f}" + ("" if pd.isna(std) else f" $\\pm$ {std:.4f}")
    text = f"\\textbf{{{text}}}" if bold else text
    return text + ("$^{*}$" if star else "")


def _best(means: pd.Series, metric: str) -> str | None:
    means = means.dropna()
    if means.empty:
        return None
    return str(means.idxmax() if higher_is_better(metric) else means.idxmin())


def _differs(sig: pd.DataFrame, key: tuple, metric: str, variant: str, best: str) -> bool:
    dataset, task, device = key
    rows = sig[(sig["dataset"] == dataset) & (sig["task"] == task) & (sig["device"] == device)
               & (sig["metric"] == metric)
               & (((sig["variant_a"] == variant) & (sig["variant_b"] == best))
                  | ((sig["variant_a"] == best) & (sig["variant_b"] == variant)))]
    return bool(not rows.empty and rows["holm_p"].iloc[0] < ALPHA)


def _table(rows: list[list[str]], header: list[str], caption: str, label: str) -> str:
    spec = "l" + "r" * (len(header) - 1)
    lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
             f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(header) + " \\\\", "\\midrule"]
    lines += [" & ".join(r) + " \\\\" for r in rows]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def latex_tables(frame: pd.DataFrame, sig: pd.DataFrame, metrics_of: Callable[[pd.DataFrame, str], list[str]],
                 primary_of: Callable[[pd.DataFrame, str], str]) -> str:
    ok = frame[frame["status"] == "ok"]
    out = ["% ncf-bench report tables: \\usepackage{booktabs}", ""]
    across: dict[str, dict[str, str]] = {}
    column_of: dict[str, tuple[pd.DataFrame, str]] = {}
    for n, (key, group) in enumerate(ok.groupby(["dataset", "task", "device"], sort=False)):
        dataset, task, device = key
        group = with_baselines(group, ok, dataset, task)
        metrics = metrics_of(group, task)
        variants = list(dict.fromkeys(group["variant"]))
        means = group.groupby("variant", sort=False)[metrics].mean()
        best = {m: _best(means[m], m) for m in metrics}
        rows = [[escape(v)] + [_cell(group.loc[group["variant"] == v, m], best[m] == v,
                                     best[m] not in (None, v) and _differs(sig, key, m, v, best[m]))
                               for m in metrics] for v in variants]
        seeds = group.groupby("variant")["seed"].nunique()
        count = f"{seeds.min()}--{seeds.max()}" if seeds.min() != seeds.max() else f"{seeds.min()}"
        caption = (f"{escape(dataset)} ({escape(task)}, {escape(device)}): mean $\\pm$ sample standard deviation "
                   f"over {count} seeds")
        caption += (". Bold: the best mean of each metric. $^{*}$: differs from the best by a paired $t$-test over "
                    f"seeds, Holm-adjusted $p < {ALPHA}$ over every pair of variants and baselines on that metric.")
        out.append(_table(rows, ["variant"] + [escape(m) for m in metrics], caption, f"tab:ncf-bench-{n}"))
        primary = primary_of(group, task)
        tasks = ok.loc[ok["dataset"] == dataset, "task"].nunique()
        qualifiers = [q for q, many in ((task, tasks > 1), (device, ok["device"].nunique() > 1)) if many]
        column = f"{dataset} ({', '.join(qualifiers)})" if qualifiers else str(dataset)
        column_of[column] = (group, primary)
        for v in variants:
            across.setdefault(v, {})[column] = ""
    if len(column_of) > 1:
        columns = list(column_of)
        rows = []
        bests = {c: _best(g.groupby("variant", sort=False)[m].mean(), m) for c, (g, m) in column_of.items()}
        for v in across:
            row = [escape(v)]
            for c in columns:
                group, metric = column_of[c]
                row.append(_cell(group.loc[group["variant"] == v, metric], bests[c] == v, False)
                           if v in set(group["variant"]) else "--")
            rows.append(row)
        named = "; ".join(f"{escape(c)}: {escape(m)}" for c, (_, m) in column_of.items())
        caption = ("The primary metric of each data set's protocol (" + named + "): mean $\\pm$ sample standard "
                   "deviation over seeds; bold: the best mean of each column.")
        out.append(_table(rows, ["variant"] + [escape(c) for c in columns], caption, "tab:ncf-bench-across"))
    return "\n".join(out)

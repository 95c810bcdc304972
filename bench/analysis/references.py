"""The question a reader brings to an NCF comparison: does any NCF variant beat a well-tuned simple
method? The verdict line between the best of each family, and the published numbers beside ours."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.analysis import stats
from bench.published import published_for
from bench.variants import BASELINE, NCF_VARIANTS, REFERENCE_VARIANTS
from ncf_core.tasks import higher_is_better


def _best(means: pd.Series, metric: str) -> str:
    return means.idxmax() if higher_is_better(metric) else means.idxmin()


def ncf_vs_references(group: pd.DataFrame, metric: str, sig: pd.DataFrame,
                      users: pd.DataFrame | None = None) -> str | None:
    """One sentence: the best NCF variant (by mean) significantly ahead of, behind, or not
    distinguishable from the best reference baseline, by the pair's paired test (Holm over the
    data set's pairs, as every other pair here)."""
    ok = group[group["status"] == "ok"]
    means = ok.groupby("variant", sort=False)[metric].mean().dropna()
    ncf = means[means.index.isin(NCF_VARIANTS)]
    refs = means[means.index.isin(REFERENCE_VARIANTS)]
    if ncf.empty or refs.empty:
        return None
    a, b = _best(ncf, metric), _best(refs, metric)
    pair = sig[(sig["metric"] == metric) & (((sig["variant_a"] == a) & (sig["variant_b"] == b))
                                            | ((sig["variant_a"] == b) & (sig["variant_b"] == a)))]
    head = (f"NCF vs the reference baselines on {metric}: the best NCF variant, **{a}** ({means[a]:.4f}), is ")
    tail = f"the best reference baseline, **{b}** ({means[b]:.4f})"
    if pair.empty or math.isnan(float(pair["holm_p"].iloc[0])):
        return head + f"compared with {tail} without a paired test (too few common seeds)."
    row = pair.iloc[0]
    diff = float(row["diff"]) if row["variant_a"] == a else -float(row["diff"])
    low, high = (row["ci_low"], row["ci_high"]) if row["variant_a"] == a else (-row["ci_high"], -row["ci_low"])
    detail = (f"(difference {diff:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}], Holm p = {float(row['holm_p']):.2g}, "
              f"paired by seed, n = {int(row['n'])}).")
    detail += _across_users(users, metric, a, b)
    if not bool(row["significant"]):
        return head + f"**not distinguishable** from {tail} " + detail
    ahead = diff > 0 if higher_is_better(metric) else diff < 0
    return head + f"significantly **{'ahead of' if ahead else 'behind'}** {tail} " + detail


def _across_users(users: pd.DataFrame | None, metric: str, a: str, b: str) -> str:
    """The same pair paired over users, where per-user values are stored."""
    if users is None or users.empty:
        return ""
    pair = users[(users["metric"] == metric) & (users["variant_a"].isin([a, b])) & (users["variant_b"].isin([a, b]))]
    if pair.empty:
        return ""
    row = pair.iloc[0]
    wins, losses = (row["wins"], row["losses"]) if row["variant_a"] == a else (row["losses"], row["wins"])
    return (f" Across users: {a} serves {wins} of {int(row['n_users'])} users better and {losses} worse, Holm p = "
            f"{float(row['holm_p']):.2g} ({'significant' if bool(row['significant']) else 'not significant'}).")


def published_table(group: pd.DataFrame, dataset: str, records: list[dict[str, Any]]) -> list[str]:
    """Published values beside this run's mean and 95% CI (t-interval over seeds), with the protocol
    differences stated; empty where nothing is published for ``dataset``."""
    known = published_for(dataset)
    ok = group[group["status"] == "ok"]
    rows = []
    for p in known:
        values = ok.loc[ok["variant"] == p.variant, p.metric].dropna().to_numpy() if p.metric in ok else []
        if not len(values):
            continue
        mean, _, low, high = stats.mean_ci(values)
        inside = "—" if math.isnan(low) else ("yes" if low <= p.value <= high else "no")
        ci = "—" if math.isnan(low) else f"[{low:.4f}, {high:.4f}]"
        rows.append([p.variant, p.metric, f"{p.value:.4f}", f"{mean:.4f}", ci, f"{mean - p.value:+.4f}", inside,
                     len(values)])
    if not rows:
        return []
    sources = sorted({p.source for p in known})
    return [f"Published vs here ({'; '.join(sources)}):", "",
            tabulate(rows, headers=["variant", "metric", "published", "here (mean)", "95% CI", "here − published",
                                    "published inside CI", "n"], tablefmt="github"), "",
            _protocol_line(records, dataset), ""]


def _protocol_line(records: list[dict[str, Any]], dataset: str) -> str:
    """How this run's protocol differs from the published one's: said, not hidden."""
    mine = [r for r in records if r["dataset"] == dataset and r.get("status") == "ok"]
    budgets = sorted({((r.get("config") or {}).get("tuning") or {}).get("budget") or 0 for r in mine
                      if not r["variant"].startswith(BASELINE)})
    refit = any(((r.get("config") or {}).get("data") or {}).get("refit") for r in mine)
    epochs = sorted({(r.get("config") or {}).get("train", {}).get("epochs") for r in mine
                     if (r.get("config") or {}).get("train")} - {None})
    tuned = ("untuned (each method at its defaults)" if budgets == [0] else
             f"{', '.join(map(str, budgets))} Optuna trials per method")
    return (f"Protocol here: {tuned}; selection on the validation item of a separate tuning seed; "
            f"{'refit on train + validation' if refit else 'no refit (trained on train only)'}; "
            f"NCF variants at most {max(epochs) if epochs else '—'} epochs. Published: each method tuned by its "
            "authors on a validation split (Bayesian search), then trained on all training data. The CI covers "
            "this run's seeds only (split negatives and initialisation), not the published run's own spread.")

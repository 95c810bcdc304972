"""Statistics over stored trials, and every decision the report states: which variant is best, which
fall significantly below a baseline, how variants rank within and across data sets.

Tests come from scipy.stats and scikit-posthocs. Written here, each against its source: Holm's
step-down (scipy has none), the TOST equivalence test as two one-sided scipy t-tests, Demšar's
critical difference from scipy's studentized range, and the smallest p each test can reach.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bench.variants import BASELINE, REFERENCE_VARIANTS
from ncf_core.tasks import higher_is_better

ALPHA = 0.05
# CPU vs CUDA: the largest difference of means still called "the same result" (TOST). On the 0-1
# scale of the rating metrics, a thousandth; ranking metrics (fractions of users), half a percent.
EQUIVALENCE_MARGIN = {"rmse": 1e-3, "mae": 1e-3, "r2": 5e-3}
DEFAULT_MARGIN = 5e-3


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample std, and the t-interval of the mean."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(values.std(ddof=1))
    if std <= 1e-12 * max(1.0, abs(mean)):  # equal values up to float rounding (a deterministic pair)
        std = 0.0
    if std == 0:
        return mean, 0.0, mean, mean
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(values))
    return mean, std, float(low), float(high)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    ok = ~np.isnan(p)
    out = np.full(len(p), np.nan)
    m = int(ok.sum())
    if m == 0:
        return out.tolist()
    idx = np.flatnonzero(ok)[np.argsort(p[ok])]
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[idx])
    out[idx] = np.minimum(adjusted, 1.0)
    return out.tolist()


def family(a: str, b: str) -> str:
    """The Holm family a pair belongs to: "ncf" when an NCF variant is in it (the comparisons the
    report's claims rest on: NCF variants with each other and with each baseline), "baselines" for
    the baselines' and reference baselines' pairs among themselves, which then do not dilute them."""
    simple = lambda v: v.startswith(BASELINE) or v in REFERENCE_VARIANTS  # noqa: E731
    return "baselines" if simple(a) and simple(b) else "ncf"


def holm_by_family(rows: list[dict[str, Any]]) -> None:
    """Holm-adjust each row's ``t_p`` within its family (``family``); sets family, holm_p, significant."""
    for row in rows:
        row["family"] = family(row["variant_a"], row["variant_b"])
    for name in ("ncf", "baselines"):
        members = [r for r in rows if r["family"] == name]
        for row, adj in zip(members, holm([r["t_p"] for r in members])):
            row["holm_p"] = adj
            row["significant"] = bool(adj < ALPHA) if not math.isnan(adj) else False


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Paired comparison a - b: mean difference, its 95% CI, t-test, Wilcoxon, Cohen's d_z."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    n = len(diff)
    mean, std, low, high = mean_ci(diff)
    t_p = w_p = math.nan
    with warnings.catch_warnings():  # near-identical pairs warn about precision; the p is still right
        warnings.simplefilter("ignore")
        if n >= 2 and std > 0:
            t_p = float(stats.ttest_rel(a, b).pvalue)
        if n >= 2 and np.any(diff != 0):
            w_p = float(stats.wilcoxon(a, b).pvalue)
    dz = mean / std if n >= 2 and std and std > 0 else math.nan
    return {"n": n, "diff": mean, "ci_low": low, "ci_high": high, "t_p": t_p,
            "wilcoxon_p": w_p, "cohen_dz": dz}


def _pivot(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """seeds x variants for one metric; only seeds where every variant has a value (paired)."""
    table = frame.pivot_table(index="seed", columns="variant", values=metric, aggfunc="first")
    return table[[v for v in dict.fromkeys(frame["variant"]) if v in table]].dropna()


def significance(trials: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Every pair of variants (baselines included), paired by seed, per data set, device, metric.

    Holm runs within a family of one (data set, task, device, metric): the pairs with an NCF variant
    in them, and apart from them the baselines' pairs among themselves (``family``).
    """
    rows = []
    ok = trials[trials["status"] == "ok"]
    for (dataset, task, device), group in ok.groupby(["dataset", "task", "device"], sort=False):
        group = with_baselines(group, ok, dataset, task)
        for metric in metrics:
            if metric not in group or group[metric].isna().all():
                continue
            table = _pivot(group, metric)
            family = []
            for va, vb in itertools.combinations(table.columns, 2):
                res = paired(table[va].to_numpy(), table[vb].to_numpy())
                family.append({"dataset": dataset, "task": task, "device": device, "metric": metric,
                               "variant_a": va, "variant_b": vb, "n": res["n"],
                               "mean_a": table[va].mean(), "mean_b": table[vb].mean(), **res})
            holm_by_family(family)
            rows += family
    columns = ["dataset", "task", "device", "metric", "variant_a", "variant_b", "n", "mean_a", "mean_b",
               "diff", "ci_low", "ci_high", "t_p", "wilcoxon_p", "holm_p", "cohen_dz", "significant", "family"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["significant"] = frame["significant"].astype(bool)  # an empty family must not turn it to objects
    return frame


def significantly_worse(sig: pd.DataFrame, metric: str, variant: str, other: str) -> bool:
    """Whether ``variant`` is significantly worse than ``other`` on ``metric`` (Holm-adjusted)."""
    rows = sig[(sig["metric"] == metric) & (((sig["variant_a"] == variant) & (sig["variant_b"] == other))
                                            | ((sig["variant_a"] == other) & (sig["variant_b"] == variant)))]
    if rows.empty or not bool(rows["significant"].iloc[0]):
        return False
    row = rows.iloc[0]
    variant_minus_other = row["diff"] if row["variant_a"] == variant else -row["diff"]
    return variant_minus_other < 0 if higher_is_better(metric) else variant_minus_other > 0


def untestable(sig: pd.DataFrame, metric: str, a: str, b: str) -> bool:
    """Whether the pair has no per-seed test: its difference is the same at every seed (two methods
    deterministic given the split), so a t-test has no spread to judge."""
    rows = sig[(sig["metric"] == metric) & (((sig["variant_a"] == a) & (sig["variant_b"] == b))
                                            | ((sig["variant_a"] == b) & (sig["variant_b"] == a)))]
    return not rows.empty and bool(pd.isna(rows["t_p"].iloc[0]))


def with_baselines(group: pd.DataFrame, ok: pd.DataFrame, dataset: str, task: str) -> pd.DataFrame:
    """Baselines run once (on the CPU); they join every device's comparison."""
    if group["variant"].str.startswith(BASELINE).any():
        return group
    base = ok[(ok["dataset"] == dataset) & (ok["task"] == task) & ok["variant"].str.startswith(BASELINE)]
    return pd.concat([group, base])


def friedman(trials: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Friedman test across the variants (baselines excluded), blocks = seeds."""
    rows = []
    ok = trials[(trials["status"] == "ok") & ~trials["variant"].str.startswith(BASELINE)]
    for (dataset, task, device), group in ok.groupby(["dataset", "task", "device"], sort=False):
        for metric in metrics:
            if metric not in group or group[metric].isna().all():
                continue
            table = _pivot(group, metric)
            p = stat = math.nan
            if table.shape[1] >= 3 and table.shape[0] >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = stats.friedmanchisquare(*[table[c].to_numpy() for c in table.columns])
                stat, p = float(res.statistic), float(res.pvalue)
            rows.append({"dataset": dataset, "task": task, "device": device, "metric": metric,
                         "k": table.shape[1], "n": table.shape[0], "statistic": stat, "p": p})
    return pd.DataFrame(rows, columns=["dataset", "task", "device", "metric", "k", "n", "statistic", "p"])


def tost(diff: np.ndarray, margin: float) -> float:
    """Two one-sided paired t-tests that the mean difference lies inside (-margin, margin).

    A small p says the two are equivalent within the margin; a non-significant t-test alone only
    says a difference was not found.
    """
    diff = np.asarray(diff, float)
    if len(diff) < 2:
        return math.nan
    if np.all(diff == diff[0]):  # no spread: the difference is known exactly
        return 0.0 if abs(diff[0]) < margin else 1.0
    lower = stats.ttest_1samp(diff, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(diff, margin, alternative="less").pvalue
    return float(max(lower, upper))


def smallest_p(n: int, k: int, m: int) -> dict[str, float]:
    """The smallest p each test can return with ``n`` seeds, ``k`` variants and ``m`` Holm pairs:
    the exact two-sided Wilcoxon cannot go below 2 / 2^n (0.0625 at n = 5) however large the effect,
    Holm multiplies the smallest by m, and Friedman's best case is every seed ranking alike."""
    wilcoxon = min(1.0, 2.0 / 2**n) if n >= 1 else math.nan
    friedman = float(stats.chi2.sf(n * (k - 1), k - 1)) if k >= 2 and n >= 1 else math.nan
    return {"wilcoxon": wilcoxon, "wilcoxon_holm": min(1.0, m * wilcoxon), "friedman": friedman}


def order_agreement(means_a: pd.Series, means_b: pd.Series) -> tuple[float, float, list[tuple[str, str]]]:
    """Kendall's tau between two orderings of the same variants, its p, and the pairs that flip."""
    common = [v for v in means_a.index if v in means_b.index]
    a, b = means_a[common].to_numpy(float), means_b[common].to_numpy(float)
    flips = [(common[i], common[j]) for i, j in itertools.combinations(range(len(common)), 2)
             if np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) < 0]
    if len(common) < 2:
        return math.nan, math.nan, flips
    res = stats.kendalltau(a, b)
    return float(res.statistic), float(res.pvalue), flips


def rank_analysis(table: pd.DataFrame, metric: str) -> dict[str, object] | None:
    """Demšar (2006): average ranks over blocks (seeds, or data sets), Friedman, Nemenyi post-hoc
    p-values and the critical difference. ``table`` is blocks x variants; rank 1 is the best."""
    table = table.dropna()
    n, k = table.shape
    if n < 2 or k < 3:
        return None
    import scikit_posthocs as sp  # only the report needs it

    oriented = table if higher_is_better(metric) else -table
    ranks = oriented.rank(axis=1, ascending=False).mean().sort_values()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_friedman = float(stats.friedmanchisquare(*[table[c].to_numpy() for c in table.columns]).pvalue)
        pvals = sp.posthoc_nemenyi_friedman(table.to_numpy())
    pvals.index = pvals.columns = list(table.columns)
    q = stats.studentized_range.ppf(1 - ALPHA, k, np.inf) / math.sqrt(2)
    cd = float(q * math.sqrt(k * (k + 1) / (6.0 * n)))
    return {"ranks": ranks, "pvalues": pvals, "cd": cd, "n": n, "k": k, "friedman_p": p_friedman}


def seed_table(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Seeds x learned variants of one (data set, task, device) group, paired seeds only."""
    learned = trials[(trials["status"] == "ok") & ~trials["variant"].str.startswith(BASELINE)]
    return _pivot(learned, metric) if metric in learned and len(learned) else pd.DataFrame()


def device_equivalence(trials: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The same (variant, seed) on CPU and CUDA: paired difference of each metric with a TOST
    equivalence test at the metric's margin, and the speed ratio."""
    rows = []
    ok = trials[(trials["status"] == "ok") & ~trials["variant"].str.startswith(BASELINE)]
    if ok["device"].nunique() < 2:
        return pd.DataFrame()
    for (dataset, task, variant), group in ok.groupby(["dataset", "task", "variant"], sort=False):
        for metric in [*metrics, "train_samples_per_s"]:
            table = group.pivot_table(index="seed", columns="device", values=metric, aggfunc="first")
            if not {"cpu", "cuda"} <= set(table.columns):
                continue
            table = table.dropna()
            if metric == "train_samples_per_s":
                ratio = table["cuda"] / table["cpu"]
                rows.append({"dataset": dataset, "task": task, "variant": variant, "metric": "speedup",
                             "n": len(table), "diff": float(ratio.mean()), "ci_low": math.nan,
                             "ci_high": math.nan, "t_p": math.nan, "margin": math.nan, "tost_p": math.nan,
                             "equivalent": ""})
                continue
            res = paired(table["cuda"].to_numpy(), table["cpu"].to_numpy())
            margin = EQUIVALENCE_MARGIN.get(metric, DEFAULT_MARGIN)
            tost_p = tost(table["cuda"].to_numpy() - table["cpu"].to_numpy(), margin)
            verdict = "yes" if tost_p < ALPHA else ("no" if res["t_p"] < ALPHA else "undetermined")
            rows.append({"dataset": dataset, "task": task, "variant": variant, "metric": metric,
                         "n": res["n"], "diff": res["diff"], "ci_low": res["ci_low"],
                         "ci_high": res["ci_high"], "t_p": res["t_p"], "margin": margin, "tost_p": tost_p,
                         "equivalent": verdict})
    return pd.DataFrame(rows)


def standings(group: pd.DataFrame, names: list[str], sig: pd.DataFrame) -> dict[str, Any]:
    """Per metric, the best learned variant (never one significantly below a baseline, Holm), which
    variants are significantly below which baselines, and which baselines each is not significantly
    different from, either way (on the first, primary, metric)."""
    ok = group[group["status"] == "ok"]
    is_base = ok["variant"].str.startswith(BASELINE)
    means = ok.groupby("variant", sort=False)[names].mean()
    learned = list(dict.fromkeys(ok[~is_base]["variant"]))
    bases = list(dict.fromkeys(ok[is_base]["variant"]))
    below = {(v, m): [b for b in bases if significantly_worse(sig, m, v, b)] for v in learned for m in names}
    best: dict[str, str | None] = {}
    for m in names:
        eligible = [v for v in learned if not below[(v, m)] and not math.isnan(means.loc[v, m])]
        pick = means.loc[eligible, m] if eligible else pd.Series(dtype=float)
        best[m] = None if pick.empty else (pick.idxmax() if higher_is_better(m) else pick.idxmin())
    primary = names[0]
    level = {v: [b for b in bases if not math.isnan(means.loc[b, primary]) and not below[(v, primary)]
                 and not significantly_worse(sig, primary, b, v)] for v in learned}  # neither side significantly
    return {"best": best, "below": below, "level_with": level, "learned": learned, "baselines": bases}


def lead(best: str | None, metric: str, sig: pd.DataFrame) -> dict[str, Any]:
    """How the best variant stands against the other learned variants: beats them all significantly,
    or not significantly some of them (with the largest Holm p)."""
    if best is None:
        return {"kind": "none"}
    rel = sig[(sig["metric"] == metric) & ((sig["variant_a"] == best) | (sig["variant_b"] == best))]
    rel = rel[~rel["variant_a"].str.startswith(BASELINE) & ~rel["variant_b"].str.startswith(BASELINE)]
    if rel.empty:
        return {"kind": "alone"}
    not_sig = rel[~rel["significant"].astype(bool)]
    if not_sig.empty:
        return {"kind": "all"}
    others = [b if a == best else a for a, b in zip(not_sig["variant_a"], not_sig["variant_b"])]
    return {"kind": "some", "others": others, "worst_p": float(not_sig["holm_p"].max())}


def ranks_across_datasets(frame: pd.DataFrame, primary_of: Any) -> dict[str, dict[str, Any]]:
    """Per device, with three or more data sets: each data set's mean of its primary metric per variant,
    turned so that higher is better, ranked with data sets as blocks."""
    out = {}
    ok = frame[(frame["status"] == "ok") & ~frame["variant"].str.startswith(BASELINE)]
    for device, group in ok.groupby("device", sort=False):
        columns = {}
        for (dataset, task), part in group.groupby(["dataset", "task"], sort=False):
            primary = primary_of(part, task)
            if primary in part:
                means = part.groupby("variant", sort=False)[primary].mean()
                columns[f"{dataset} ({task})"] = means if higher_is_better(primary) else -means
        if len(columns) >= 3:
            ra = rank_analysis(pd.DataFrame(columns).T, "score")
            if ra is not None:
                out[device] = ra
    return out


# -- across users: each user's value averaged over seeds, paired over the users every variant has --

PERMUTATIONS, PERMUTATION_SEED = 10_000, 0  # the sign-flip randomization test's draws and seed
USER_COLUMNS = ["dataset", "task", "device", "metric", "variant_a", "variant_b", "n_users", "mean_a", "mean_b",
                "diff", "t_p", "wilcoxon_p", "randomization_p", "holm_p", "cohen_dz", "wins", "ties", "losses",
                "significant", "family", "permutations"]


def sign_flip_p(diff: np.ndarray, permutations: int = PERMUTATIONS, seed: int = PERMUTATION_SEED) -> float:
    """Two-sided paired randomization test (Fisher): how often a random sign for each user's difference
    gives a mean at least as far from zero as the one observed; (hits + 1) / (permutations + 1)."""
    return float(sign_flip_ps(np.asarray(diff, float)[:, None], permutations, seed)[0])


def sign_flip_ps(diffs: np.ndarray, permutations: int = PERMUTATIONS, seed: int = PERMUTATION_SEED) -> np.ndarray:
    """``sign_flip_p`` of each column of ``diffs`` (users x pairs), every column under the same draws
    (one matrix product a chunk of draws, instead of one a pair); NaN where a column is all zero."""
    d = np.asarray(diffs, float)
    observed = np.abs(d.mean(axis=0)) * (1 - 1e-12)  # a draw equal to the observed one counts, up to rounding
    rng, hits, done = np.random.default_rng(seed), np.zeros(d.shape[1]), 0
    while done < permutations:
        n = min(1000, permutations - done)
        signs = (rng.integers(0, 2, size=(n, d.shape[0]), dtype=np.int8) * 2 - 1).astype(float)
        hits += (np.abs(signs @ d) / d.shape[0] >= observed).sum(axis=0)
        done += n
    return np.where(np.any(d != 0, axis=0), (hits + 1) / (permutations + 1), np.nan)


def users_by_variant(group: pd.DataFrame, metric: str) -> pd.DataFrame:
    """users x variants: each user's value averaged over seeds, only users every variant has."""
    table = group.groupby(["user", "variant"], sort=False)[metric].mean().unstack("variant")
    return table[[v for v in dict.fromkeys(group["variant"]) if v in table]].dropna()


def user_significance(per_user: pd.DataFrame, metrics: dict[str, list[str]]) -> pd.DataFrame:
    """Every pair of variants (baselines included) paired over users, per data set, device and metric
    (``metrics``: per task): paired t, Wilcoxon signed-rank, sign-flip randomization, Holm over the
    pairs of one (data set, task, device, metric) on the t-test's p, Cohen's d_z, and per user whether
    ``variant_a`` did better, the same, or worse."""
    rows = []
    for (dataset, task, device), group in per_user.groupby(["dataset", "task", "device"], sort=False):
        group = with_baselines(group, per_user, dataset, task)
        for metric in metrics.get(task, []):
            if metric not in group or group[metric].isna().all():
                continue
            table, sign = users_by_variant(group, metric), 1 if higher_is_better(metric) else -1
            family = []
            for va, vb in itertools.combinations(table.columns, 2):
                a, b = table[va].to_numpy(), table[vb].to_numpy()
                res, d = paired(a, b), a - b  # the same t, Wilcoxon and d_z as the per-seed tests
                wins, losses = int((sign * d > 0).sum()), int((sign * d < 0).sum())
                family.append({"dataset": dataset, "task": task, "device": device, "metric": metric,
                               "variant_a": va, "variant_b": vb, "n_users": len(d), "mean_a": a.mean(),
                               "mean_b": b.mean(), "diff": res["diff"], "t_p": res["t_p"],
                               "wilcoxon_p": res["wilcoxon_p"], "cohen_dz": res["cohen_dz"],
                               "wins": wins, "ties": len(d) - wins - losses, "losses": losses,
                               "permutations": PERMUTATIONS})
            pairs = list(itertools.combinations(table.columns, 2))
            flips = sign_flip_ps(np.stack([table[a] - table[b] for a, b in pairs], axis=1)) if pairs else []
            for row, flip in zip(family, flips):
                row["randomization_p"] = float(flip)
            holm_by_family(family)
            rows += family
    frame = pd.DataFrame(rows, columns=USER_COLUMNS)
    frame["significant"] = frame["significant"].astype(bool)
    return frame

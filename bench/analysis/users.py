"""The summary's account of the two kinds of paired test, told apart: across seeds (would retraining
change the order?) and across users (does the better variant serve most users better?)."""

from __future__ import annotations

import math

import pandas as pd
from tabulate import tabulate

from bench.analysis.stats import PERMUTATION_SEED, PERMUTATIONS

MAX_LISTED = 6  # disagreeing pairs named in the summary; the CSVs hold them all


def _p(x: float) -> str:
    return "—" if x is None or math.isnan(x) else (f"{x:.2g}" if x >= 1e-4 else "<1e-4")


def user_lines(seeds: pd.DataFrame, users: pd.DataFrame, metric: str) -> list[str]:
    """The per-user tests of one (data set, task, device) on ``metric``, with the sentence that tells
    them from the per-seed ones and the pairs on which the two disagree."""
    u = users[users["metric"] == metric]
    if u.empty:
        return []
    n = int(u["n_users"].max())
    out = ["Two kinds of paired test, two questions. **Across seeds** (the table above): each seed's test mean "
           "paired by seed — would retraining with other seeds change the order? **Across users** (below): each "
           f"user's {metric} averaged over the seeds, paired over the {n} users every variant was scored on — does "
           "the better variant serve most users better? Paired t, Wilcoxon signed-rank, and a sign-flip "
           f"randomization test ({PERMUTATIONS:,} permutations, seed {PERMUTATION_SEED}); Holm over the same "
           "pairs on the t-test's p; `significance_users.csv` has every metric.", ""]
    s = seeds[seeds["metric"] == metric].set_index(["variant_a", "variant_b"])["significant"]
    rows, differ = [], []
    for r in u.itertuples():
        rows.append([r.variant_a, r.variant_b, f"{r.diff:.5f}", _p(r.t_p), _p(r.wilcoxon_p), _p(r.randomization_p),
                     _p(r.holm_p), "—" if math.isnan(r.cohen_dz) else f"{r.cohen_dz:.2f}",
                     f"{r.wins}/{r.ties}/{r.losses}", "yes" if r.significant else "no"])
        by_seed = s.get((r.variant_a, r.variant_b))
        if by_seed is not None and bool(by_seed) != bool(r.significant):
            differ.append(f"{r.variant_a} vs {r.variant_b} ({'users' if r.significant else 'seeds'} only)")
    out += [f"Paired differences on {metric} (a − b), by user:", "",
            tabulate(rows, headers=["a", "b", "diff", "t p", "Wilcoxon p", "randomization p", "Holm p", "d_z",
                                    "a better / same / worse (users)", "sig."], tablefmt="github"), ""]
    if differ:
        shown = "; ".join(differ[:MAX_LISTED]) + (f"; and {len(differ) - MAX_LISTED} more" if len(differ) > MAX_LISTED
                                                  else "")
        out += [f"The two disagree on {len(differ)} of {len(rows)} pairs: {shown}. They answer different questions: "
                "a difference most users share can still move with the seed (few seeds give the per-seed test little "
                "power), and one the seeds agree on can rest on few users.", ""]
    return out

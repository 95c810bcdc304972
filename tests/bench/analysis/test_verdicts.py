"""The statistics and the words of a report: p-values recomputed with scipy, Holm and TOST by
hand, ranks and critical differences, what the summary and the LaTeX tables may and may not claim."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.__main__ import main
from bench.analysis import stats


def test_significance_matches_scipy_recomputed_from_trials_csv(smoke_run):
    trials = pd.read_csv(smoke_run / "report" / "trials.csv")
    sig = pd.read_csv(smoke_run / "report" / "significance.csv")
    rating = trials[trials["task"] == "rating"]
    a = rating[rating["variant"] == "gmf"].sort_values("seed")["rmse"].to_numpy()
    b = rating[rating["variant"] == "neumf"].sort_values("seed")["rmse"].to_numpy()
    row = sig[(sig["task"] == "rating") & (sig["metric"] == "rmse") & (sig["variant_a"] == "gmf")
              & (sig["variant_b"] == "neumf")].iloc[0]
    assert row["t_p"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-9)
    assert row["wilcoxon_p"] == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-9)
    d = a - b
    low, high = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["cohen_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    pairs = sig[(sig["task"] == "rating") & (sig["metric"] == "rmse") & (sig["device"] == "cpu")]
    simple = lambda v: v.startswith("baseline-") or v in ("ease", "ials", "itemknn", "rp3beta")  # noqa: E731
    among_baselines = pairs["variant_a"].map(simple) & pairs["variant_b"].map(simple)
    assert (pairs["family"] == np.where(among_baselines, "baselines", "ncf")).all() and among_baselines.any()
    for _, family in pairs.groupby("family"):  # Holm by hand within each: sort, times (m - i + 1), running max
        m = len(family)
        ordered = family.assign(r=family["t_p"].rank(method="first").astype(int)).sort_values("r")
        expected = np.minimum(np.maximum.accumulate((m - ordered["r"] + 1) * ordered["t_p"]), 1)
        assert ordered["holm_p"].to_numpy() == pytest.approx(expected.to_numpy())


def test_holm_by_hand():
    assert stats.holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])


def test_tost_on_a_hand_made_case():
    from scipy.stats import t as student

    diff = np.array([0.0002, -0.0001, 0.0003, 0.0000, 0.0001])
    n, margin = len(diff), 0.001
    se = diff.std(ddof=1) / np.sqrt(n)
    lower = student.sf((diff.mean() + margin) / se, n - 1)  # H0: diff <= -margin
    upper = student.cdf((diff.mean() - margin) / se, n - 1)  # H0: diff >= +margin
    assert stats.tost(diff, margin) == pytest.approx(max(lower, upper), rel=1e-10)
    assert stats.tost(diff, margin) < 0.05  # equivalent within a thousandth
    assert stats.tost(diff + 0.002, margin) > 0.5  # a real difference is not "equivalent"
    assert stats.tost(np.array([0.003, 0.003]), margin) == 1.0  # no spread, outside the margin


def test_the_verdict_never_names_a_variant_significantly_below_a_baseline():
    """mf has the best mean RMSE of the learned variants but is significantly worse than the
    user+item mean; gmf is worse on average yet not distinguishable from it: gmf is the best."""
    from bench.analysis.report import metric_table, verdict

    base = np.array([0.150, 0.151, 0.149, 0.150, 0.152])
    values = {"mf": base + [0.010, 0.011, 0.009, 0.010, 0.012],
              "gmf": base + [0.03, -0.01, 0.04, -0.02, 0.025], "baseline-user-item-mean": base}
    frame = pd.DataFrame([{"dataset": "d", "task": "rating", "variant": v, "device": "cpu", "seed": s,
                           "status": "ok", "rmse": x} for v, xs in values.items() for s, x in enumerate(xs)])
    sig = stats.significance(frame, ["rmse"])
    table, best = metric_table(frame, ["rmse"], sig)
    assert frame[frame["variant"] == "mf"]["rmse"].mean() < frame[frame["variant"] == "gmf"]["rmse"].mean()
    assert best["rmse"] == "gmf"
    assert "✗ significantly below baseline-user-item-mean" in table.splitlines()[2]  # the mf row
    assert "not distinguishable from baseline-user-item-mean" in table.splitlines()[3]
    assert "**gmf**" in verdict("d", "rmse", best["rmse"], sig)
    alone = frame[frame["variant"] != "gmf"]
    _, best = metric_table(alone, ["rmse"], stats.significance(alone, ["rmse"]))
    assert best["rmse"] is None and "no variant can be called best" in verdict("d", "rmse", None, sig)


def test_smallest_reachable_p_values():
    floor = stats.smallest_p(5, 6, 21)
    assert floor["wilcoxon"] == pytest.approx(0.0625)
    assert floor["wilcoxon_holm"] == 1.0
    assert floor["friedman"] == pytest.approx(sps.chi2.sf(25, 5))
    assert stats.smallest_p(5, 6, 21)["wilcoxon"] == pytest.approx(sps.wilcoxon([1, 2, 3, 4, 5]).pvalue)


def test_average_ranks_and_critical_difference_by_hand():
    """Demšar (2006): rank 1 = best per block, ties averaged; CD = q_0.05 * sqrt(k(k+1) / 6N),
    q_0.05 = 2.343 for k = 3 (his Table 5)."""
    table = pd.DataFrame({"a": [0.30, 0.31, 0.29, 0.30], "b": [0.20, 0.25, 0.29, 0.10],
                          "c": [0.10, 0.05, 0.01, 0.20]})  # a higher-is-better metric
    ra = stats.rank_analysis(table, "ndcg@10")
    assert ra["ranks"].to_dict() == pytest.approx({"a": (1 + 1 + 1.5 + 1) / 4, "b": (2 + 2 + 1.5 + 3) / 4,
                                                   "c": (3 + 3 + 3 + 2) / 4})
    assert ra["cd"] == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 4)), rel=1e-3)
    lower = stats.rank_analysis(table, "rmse")  # lower is better: the order turns round
    assert list(lower["ranks"].index) == ["c", "b", "a"]
    assert ra["pvalues"].loc["a", "c"] == pytest.approx(ra["pvalues"].loc["c", "a"]) and ra["pvalues"].loc["a", "c"] < 1


def test_report_rebuilds_identical_tables(smoke_run, tmp_path):
    before = (smoke_run / "report" / "significance.csv").read_text()
    (smoke_run / "report" / "significance.csv").unlink()
    assert main(["report", str(smoke_run)]) == 0
    assert (smoke_run / "report" / "significance.csv").read_text() == before


def test_latex_tables_hold_the_trials_means_the_best_in_bold_and_holm_stars(smoke_run, tmp_path):
    """Recomputed from trials.csv and significance.csv; compiled where pdflatex is installed."""
    import re
    import shutil

    tex = (smoke_run / "report" / "tables.tex").read_text()
    trials = pd.read_csv(smoke_run / "report" / "trials.csv")
    sig = pd.read_csv(smoke_run / "report" / "significance.csv")
    tables = re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, re.S)
    assert len(tables) == 3  # ranking, rating, and the primary metric across them
    for table in tables:
        assert table.count("\\toprule") == table.count("\\midrule") == table.count("\\bottomrule") == 1
        body = table.split("\\toprule")[1].split("\\bottomrule")[0].replace("\\midrule", "")
        rows = [r for r in body.split("\\\\") if r.strip()]
        assert len({r.count("&") for r in rows}) == 1 and "_" not in re.sub(r"\\_", "", body)
    ranking = next(t for t in tables if "(ranking, cpu)" in t)
    header = ranking.split("\\toprule")[1].split("\\\\")[0]
    metric = "hr@10"
    column = [c.strip().replace("\\_", "_") for c in header.split("&")].index(metric)
    cells = {}
    for row in ranking.split("\\midrule")[1].split("\\bottomrule")[0].split("\\\\")[:-1]:
        parts = [p.strip() for p in row.split("&")]
        cells[parts[0].replace("\\_", "_")] = parts[column]
    ok = trials[(trials["task"] == "ranking") & (trials["status"] == "ok")]
    means = ok.groupby("variant")[metric].mean()
    best = means.idxmax()
    for variant, cell in cells.items():
        values = ok.loc[ok["variant"] == variant, metric]
        assert f"{values.mean():.4f} $\\pm$ {values.std(ddof=1):.4f}" in cell, variant
        assert cell.startswith("\\textbf{") == (variant == best), variant
        pair = sig[(sig["task"] == "ranking") & (sig["metric"] == metric)
                   & (((sig["variant_a"] == variant) & (sig["variant_b"] == best))
                      | ((sig["variant_a"] == best) & (sig["variant_b"] == variant)))]
        starred = bool(len(pair)) and pair["holm_p"].iloc[0] < 0.05
        assert cell.endswith("$^{*}$") == starred, variant
    if shutil.which("pdflatex"):
        doc = tmp_path / "t.tex"
        doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + tex + "\\end{document}\n")
        res = subprocess.run(["pdflatex", "-interaction=nonstopmode", doc.name], cwd=tmp_path, capture_output=True)
        assert res.returncode == 0, res.stdout[-2000:]


def test_a_baseline_with_the_better_mean_is_bolded_and_named_not_the_variant_it_is_level_with():
    """gmf is the best learned variant, but the user+item mean does better on average (not
    significantly): the table bolds the baseline, and gmf's note names it."""
    from bench.analysis.report import metric_table

    base = np.array([0.150, 0.151, 0.149, 0.150, 0.152])
    values = {"gmf": base + [0.004, -0.003, 0.005, -0.002, 0.001], "baseline-user-item-mean": base}
    frame = pd.DataFrame([{"dataset": "d", "task": "rating", "variant": v, "device": "cpu", "seed": s,
                           "status": "ok", "rmse": x} for v, xs in values.items() for s, x in enumerate(xs)])
    table, best = metric_table(frame, ["rmse"], stats.significance(frame, ["rmse"]))
    rows = table.splitlines()
    assert best["rmse"] == "gmf" and "**" not in rows[2] and "**" in rows[3]
    assert rows[2].rstrip(" |").endswith("not distinguishable from baseline-user-item-mean")


def test_the_summary_says_why_a_t_test_and_the_cd_diagram_can_disagree_and_what_holm_covers(smoke_run):
    summary = (smoke_run / "report" / "summary.md").read_text()
    assert "a pair can be significant by t and still be linked in the diagram" in summary
    assert "Holm's family: the pairs with an NCF variant in them" in summary
    assert "Cells: mean ± sample standard deviation over the n seeds" in summary


def test_full_hit_rate_is_not_reported_twice_under_leave_one_out(smoke_run):
    """One held-out item per user makes full-ranking HR@10 and Recall@10 the same number."""
    trials = pd.read_csv(smoke_run / "report" / "trials.csv")
    ranking = trials[trials["task"] == "ranking"]
    assert ranking["full_hr@10"].equals(ranking["full_recall@10"])  # stored, as measured
    sig = pd.read_csv(smoke_run / "report" / "significance.csv")
    assert "full_hr@10" not in set(sig["metric"]) and "full_recall@10" in set(sig["metric"])
    assert "full\\_hr@10" not in (smoke_run / "report" / "tables.tex").read_text()


def test_a_floor_baseline_far_off_does_not_set_the_metric_plots_scale():
    from bench.analysis.plots import y_range

    values = {"mf": np.array([0.40, 0.42]), "gmf": np.array([0.41, 0.43]), "baseline-mean": np.array([0.05, 0.05]),
              "ease": np.array([0.44])}
    low, high = y_range(values)
    assert 0.38 < low < 0.40 and 0.44 < high < 0.46  # the variants and EASE fill the axis
    assert y_range({"baseline-mean": np.array([0.1])}) is None


def test_a_variant_significantly_above_a_baseline_says_so_not_a_blank_note():
    from bench.analysis.report import metric_table

    base = np.array([0.150, 0.151, 0.149, 0.150, 0.152])
    values = {"mf": base - [0.010, 0.011, 0.009, 0.010, 0.012], "baseline-mean": base}
    frame = pd.DataFrame([{"dataset": "d", "task": "rating", "variant": v, "device": "cpu", "seed": s,
                           "status": "ok", "rmse": x} for v, xs in values.items() for s, x in enumerate(xs)])
    table, _ = metric_table(frame, ["rmse"], stats.significance(frame, ["rmse"]))
    assert table.splitlines()[2].rstrip(" |").endswith("significantly above baseline-mean")


def test_two_deterministic_methods_are_not_called_indistinguishable():
    """EASE and popularity give the same full-ranking value at every seed: a t-test has no spread, and
    "not distinguishable" would claim what was never tested."""
    from bench.analysis.report import metric_table

    frame = pd.DataFrame([{"dataset": "d", "task": "ranking", "variant": v, "device": "cpu", "seed": s,
                           "status": "ok", "full_ndcg@10": x}
                          for v, x in (("ease", 0.067), ("baseline-popularity", 0.043)) for s in range(5)])
    table, _ = metric_table(frame, ["full_ndcg@10"], stats.significance(frame, ["full_ndcg@10"]))
    assert "not distinguishable" not in table
    assert "the same difference at every seed from baseline-popularity: no per-seed test" in table.splitlines()[2]


def test_summary_throughput_names_the_task_and_warns_on_spread():
    from bench.analysis.report import summary_markdown, throughput_table

    rows = []
    for task, speeds in (("rating", [1e5, 1e5, 1.1e5]), ("ranking", [1e5, 1e4, 3e5])):
        for seed, sps_ in enumerate(speeds):
            rows.append({"dataset": "synthetic", "task": task, "variant": "mf", "device": "cpu", "seed": seed,
                         "status": "ok", "train_samples_per_s": sps_, "infer_samples_per_s": 1e6,
                         "train_seconds": 1.0, "stacked_seeds": 1, **({"threads": 1, "jobs": 2} if task == "rating"
                                                                       else {})})
    frame = pd.DataFrame(rows)
    table = throughput_table(frame)
    text = summary_markdown(frame.iloc[:0], pd.DataFrame(columns=["dataset", "task", "device", "metric"]),
                            pd.DataFrame(), table, pd.DataFrame(), [])
    import re

    assert re.search(r"\| synthetic +\| rating +\| mf +\| cpu +\| +3 \| +1 \| 1 × 2 ", text)
    assert re.search(r"\| synthetic +\| ranking +\| mf +\| cpu +\| +3 \| +1 \| — ", text)  # stored before threads were
    assert "varied by more than 25% across seeds for 1 row(s)" in text


def test_throughput_measured_beside_other_work_is_flagged():
    from bench.analysis.throughput import throughput_lines, throughput_table

    def frame(load: float) -> pd.DataFrame:
        return pd.DataFrame([{"dataset": "d", "task": "ranking", "variant": "mf", "device": "cpu", "seed": s,
                              "status": "ok", "train_samples_per_s": 1000.0 + s, "infer_samples_per_s": 5e4,
                              "train_seconds": 2.0, "stacked_seeds": 1, "threads": 1, "jobs": 2,
                              "load_average": load} for s in range(3)])

    assert not any("beside other work" in line for line in throughput_lines(throughput_table(frame(2.2))))
    flagged = [line for line in throughput_lines(throughput_table(frame(4.5))) if "beside other work" in line]
    assert flagged == ["> **Warning:** 1 row(s) were measured beside other work: the 1-minute load average reached "
                       "4.5 where this run's own threads × jobs were 1 × 2; their speeds say little about this "
                       "machine."]



def test_the_cd_diagrams_bar_does_not_cross_the_rank_axis_numbers():
    """scikit-posthocs draws the CD bar and its label on the axis's tick labels (6 px above them
    here, across them in a shorter figure); the report's diagram lifts them a line clear."""
    import matplotlib.pyplot as plt

    from bench.analysis.plots import cd_figure

    names = ["mf", "gmf", "mlp", "neumf", "neumf-pre-adam", "neumf-pre-sgd", "ease", "ials", "itemknn",
             "rp3beta", "popularity"]
    ranks = pd.Series(np.linspace(2, 9, len(names)), index=names)
    pvalues = pd.DataFrame(0.5, index=names, columns=names)
    fig = cd_figure({"ranks": ranks, "pvalues": pvalues, "cd": 3.2, "k": len(names)}, "ml-100k")
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    label = next(t for t in ax.texts if t.get_text().startswith("CD ="))
    bar = next(line for line in ax.lines if len(line.get_xdata()) == 2 and np.ptp(line.get_xdata()) == 3.2)
    top, height = max(t.y1 for t in ticks), max(t.height for t in ticks)
    for extent in (label.get_window_extent(renderer), bar.get_window_extent(renderer)):
        assert extent.y0 >= top + height  # a line of text clear of the numbers, not touching them
    plt.close(fig)

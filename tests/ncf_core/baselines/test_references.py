"""The reference baselines: each one's arithmetic against a hand or direct computation, the protocol
they share with the NCF variants (same training data, never the test item, N trials a study, a
resumed study identical), and what the summary says of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
import scipy.sparse as sp
import torch

from bench.__main__ import main
from bench.compute import references
from bench.configs import resolve
from bench.params import TunedParams
from bench.suites import synthetic
from bench.variants import VARIANTS
from ncf_core.baselines import REFERENCES, ease, itemknn, memory_problem, reference_config, rp3beta
from ncf_core.baselines.scoring import fit_reference, user_items
from ncf_core.data import Interactions
from tests.conftest import ROOT, ml1m_like

X = sp.csr_matrix(np.array([[1, 1, 0, 0, 1],
                            [0, 1, 1, 0, 0],
                            [1, 0, 1, 1, 0],
                            [1, 1, 1, 0, 0],
                            [0, 0, 1, 1, 1],
                            [0, 1, 0, 1, 0]], dtype=np.float32))


def test_ease_closed_form_is_the_constrained_least_squares_solution():
    """Each column of B minimises ||x_j - X_{-j} b||² + λ||b||² over the other items (diag(B) = 0)."""
    lam = 0.7
    b = ease.weights(X, lam)
    dense = X.toarray().astype(np.float64)
    for j in range(dense.shape[1]):
        others = [i for i in range(dense.shape[1]) if i != j]
        a = dense[:, others]
        direct = np.linalg.solve(a.T @ a + lam * np.eye(len(others)), a.T @ dense[:, j])
        np.testing.assert_allclose(b[others, j], direct, rtol=1e-5, atol=1e-6)
        assert b[j, j] == 0.0


def test_ials_scores_are_the_dot_products_of_the_librarys_factors():
    from implicit.cpu.als import AlternatingLeastSquares

    cfg = reference_config("ials", {"factors": 3, "epochs": 4, "alpha": 2.0, "regularization": 0.1})
    train = Interactions(*X.nonzero(), np.ones(X.nnz), 6, 5)
    assert (user_items(train) != X).nnz == 0
    module = fit_reference("ials", train, cfg, seed=5)
    lib = AlternatingLeastSquares(factors=3, regularization=0.1, alpha=2.0, iterations=4, num_threads=1,
                                  random_state=np.random.default_rng([5, 3]))
    lib.fit(X, show_progress=False)
    expected = lib.user_factors @ lib.item_factors.T
    users, items = torch.arange(6), torch.arange(5)
    np.testing.assert_allclose(module.grid(users, items).numpy(), expected, rtol=1e-6)
    pairs = module(users.repeat_interleave(5), items.repeat(6)).numpy().reshape(6, 5)
    np.testing.assert_allclose(pairs, expected, rtol=1e-5, atol=1e-6)


def test_itemknn_similarity_is_the_shrunk_cosine_of_the_top_k():
    shrink, k = 2.0, 2
    s = itemknn.similarity(X, k, shrink).toarray()
    dense = X.toarray().astype(np.float64)
    for j in range(5):
        hand = np.array([dense[:, i] @ dense[:, j] / (np.linalg.norm(dense[:, i]) * np.linalg.norm(dense[:, j])
                                                       + shrink + 1e-6) if i != j else 0.0 for i in range(5)])
        keep = np.argsort(-hand, kind="stable")[:k]
        np.testing.assert_allclose(np.sort(s[:, j][s[:, j] > 0]), np.sort(hand[keep][hand[keep] > 0]), rtol=1e-6)
        assert s[j, j] == 0.0
    train = Interactions(*X.nonzero(), np.ones(X.nnz), 6, 5)
    module = fit_reference("itemknn", train, reference_config("itemknn", {"top_k": k, "shrink": shrink}), 0)
    np.testing.assert_allclose(module.grid(torch.arange(6), torch.arange(5)).numpy(), dense @ s, rtol=1e-5)


def test_rp3beta_transitions_are_distributions_and_the_weights_follow_them():
    p_ui, p_iu = rp3beta.transitions(X)
    np.testing.assert_allclose(np.asarray(p_ui.sum(axis=1)).ravel(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(p_iu.sum(axis=1)).ravel(), 1.0, rtol=1e-6)
    alpha, beta = 0.8, 0.5
    w = rp3beta.weights(X, alpha, beta, top_k=5).toarray()
    hand = (p_iu.toarray() ** alpha) @ (p_ui.toarray() ** alpha) / np.asarray(X.sum(axis=0)).ravel() ** beta
    np.fill_diagonal(hand, 0.0)
    np.testing.assert_allclose(w, hand, rtol=1e-5)


def _planted() -> Interactions:
    """Each user's latest item is one of its own that nobody else has and it has nowhere else."""
    rng = np.random.default_rng(0)
    n_users, common = 30, 20
    users, items, times = [], [], []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(common, 6, replace=False)):
            users.append(u), items.append(int(i)), times.append(t)
        users.append(u), items.append(common + u), times.append(100)  # the test item: unseen anywhere else
    return Interactions(np.array(users), np.array(items), np.ones(len(users)), n_users, common + n_users,
                        timestamps=np.array(times))


@pytest.mark.parametrize("refit", [False, True])
def test_a_reference_never_sees_the_test_item(monkeypatch, refit):
    data = _planted()
    seen = []
    real = references.fit_reference
    monkeypatch.setattr(references, "fit_reference",
                        lambda name, train, *a: seen.append(train) or real(name, train, *a))
    spec = synthetic("ranking")
    spec = replace(spec, n_eval_negatives=5, refit=refit)
    records = references.reference_records(spec, data, (0, 1), "cpu", resolve(spec, VARIANTS["ease"], TunedParams()),
                                           None, 1)
    assert [r["status"] for r in records] == ["ok", "ok"]
    for train in seen:
        assert not np.any(train.items >= 20), "a planted test item reached the fit"
    # the planted items were never fitted on, so EASE scores them 0 and (ties against it) never hits
    assert all(r["metrics"]["full_hr@10"] == 0.0 for r in records)


def test_the_memory_guard_names_the_items_and_the_need():
    cfg = reference_config("ease")
    assert memory_problem("ease", 1000, 27_278, cfg, limit=8 * 2**30) == (
        "EASE^R on 27,278 items needs 13.9 GiB (limit 8.0 GiB, 50% of this machine's memory)")
    assert memory_problem("ease", 1000, 3_706, cfg, limit=8 * 2**30) is None


def test_a_reference_asked_for_past_the_memory_limit_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("ncf_core.baselines.MEMORY_SHARE", 1e-9)
    out = tmp_path / "run"
    assert main(["run", "--suite", "smoke", "--variants", "ease,gmf", "--seeds", "1",
                 "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --variants: ease on synthetic: EASE^R on 150 items needs") and "\n" not in err
    assert not (out / "trials.jsonl").exists()


def test_params_files_check_a_references_settings(tmp_path, capsys):
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"variants": {"ease": {"model": {"l2": -1.0}}}}))
    assert main(["run", "--suite", "smoke", "--variants", "ease", "--params", str(bad), "--out",
                 str(tmp_path / "r")]) == 2
    assert "variant 'ease': l2 must be a positive number" in capsys.readouterr().err


RUN = [sys.executable, "-m", "bench", "run", "--suite", "smoke", "--variants",
       ",".join(REFERENCES), "--tune", "5", "--seeds", "2", "--jobs", "1"]


def _studies(out: Path) -> dict[str, list[tuple]]:
    db = f"sqlite:///{out / 'tuning' / 'studies.db'}"
    return {s.study_name: [(t.number, t.state.name, t.value, t.params)
                           for t in optuna.load_study(study_name=s.study_name, storage=db).trials]
            for s in optuna.get_all_study_summaries(db)}


@pytest.mark.slow
def test_each_reference_study_ends_with_n_trials_and_resumes_identically_after_sigkill(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "BENCH_KILL_AT"}
    whole = tmp_path / "whole"
    subprocess.run([*RUN, "--out", str(whole)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    studies = _studies(whole)
    assert sorted(studies) == sorted(f"synthetic-ranking-{name}" for name in REFERENCES)
    assert all(len(trials) == 5 and {t[1] for t in trials} == {"COMPLETE"} for trials in studies.values())
    info = json.loads((whole / "manifest.json").read_text())["tuning"]["studies"]
    assert {v["trials"] for v in info.values()} == {5}

    killed = tmp_path / "killed"
    run = subprocess.run([*RUN, "--out", str(killed)], cwd=ROOT, env={**env, "BENCH_KILL_AT": "study-epoch:8"},
                         capture_output=True, timeout=600)
    assert run.returncode != 0  # killed inside the second study, its third trial fitted but not told
    subprocess.run([*RUN, "--out", str(killed)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    assert _studies(killed) == studies
    trials = lambda out: sorted(json.dumps([r["variant"], r["seed"], r["metrics"]])  # noqa: E731
                                for r in map(json.loads, (out / "trials.jsonl").read_text().splitlines()))
    assert trials(killed) == trials(whole)


def test_the_summary_puts_published_numbers_beside_ours_and_says_ncf_vs_references(tmp_path):
    data = tmp_path / "data"
    ml1m_like(data / "ncf", "ml-1m")
    out = tmp_path / "run"
    assert main(["run", "--suite", "full", "--data-dir", str(data), "--datasets", "ncf-ml-1m", "--variants",
                 "gmf,ease,itemknn", "--seeds", "3", "--epochs", "1", "--out", str(out)]) == 0
    summary = (out / "report" / "summary.md").read_text()
    assert "NCF vs the reference baselines on full_ndcg@10: the best NCF variant, **gmf**" in summary
    assert "Published vs here (Dacrema et al. 2021 (TOIS), Table 55" in summary
    rows = [line for line in summary.splitlines() if line.startswith("| ease ") and "0.7192" in line]
    assert rows and "| hr@10 " in rows[0]
    assert "Protocol here: untuned (each method at its defaults)" in summary
    table = summary[summary.index("| variant "):]
    assert "| itemknn " in table and "reference baseline" in table
    sig = (out / "report" / "significance.csv").read_text()
    assert "gmf,ease" in sig and "ease,itemknn" in sig


def test_the_plan_prices_a_reference_study_one_fit_at_a_time(tmp_path, capsys):
    assert main(["run", "--suite", "smoke", "--tune", "3", "--tune-stack", "2", "--variants", "ease,gmf", "--plan",
                 "--out", str(tmp_path / "plan")]) == 0  # the NCF study stacks as asked; the reference's cannot
    printed = capsys.readouterr().out
    assert "study ease            3 trials, 1 at a time" in printed
    assert "study gmf             3 trials, 2 at a time" in printed
    assert "unit  ease                     cpu  seeds [0, 1, 2]" in printed
    assert not (tmp_path / "plan").exists()

"""Per-user values: one Parquet file a trial, written before its record (a trial without its file is
not done), and the tests paired over users, recomputed here from the stored files with scipy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.__main__ import main
from bench.run.store import TrialStore, trial_key
from ncf_core.evaluate import Evaluation
from tests.conftest import ROOT

ARGS = ["run", "--suite", "smoke", "--variants", "gmf,mf,ease", "--seeds", "2", "--epochs", "1", "--jobs", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("per-user") / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def test_rating_errors_become_each_users_rmse_and_mae():
    rows = Evaluation({}, {"abs_error": np.array([0.1, 0.3, 0.2, 0.0])}, 4, 1.0,
                      {"abs_error": np.array([7, 2, 7, 7])})
    by = rows.by_user()
    assert by["user"].tolist() == [2, 7]
    np.testing.assert_allclose(by["mae"], [0.3, 0.1])
    np.testing.assert_allclose(by["rmse"], [0.3, np.sqrt((0.01 + 0.04 + 0.0) / 3)])


def test_every_trial_has_its_per_user_file_with_the_trials_means(run):
    store = TrialStore(run)
    records = store.records()
    assert len(list((run / "per_user").glob("*.parquet"))) == len(records)
    for rec in records:
        frame = pd.read_parquet(store.per_user_path(rec))
        assert list(frame.columns[:6]) == ["dataset", "task", "variant", "device", "seed", "user"]
        assert frame["user"].is_unique
        assert set(rec["metrics"]) - {"r2"} <= set(frame.columns)
        for name in set(rec["metrics"]) & set(frame.columns):
            if rec["task"] == "ranking":  # one test row a user: the trial's metric is the users' mean
                assert frame[name].mean() == pytest.approx(rec["metrics"][name], abs=1e-12)
        if rec["task"] == "rating":  # per user: RMSE and MAE over its own test ratings
            assert {"rmse", "mae"} <= set(frame.columns) and (frame["rmse"] >= frame["mae"] - 1e-12).all()


def test_per_user_tests_recomputed_with_scipy(run):
    users = pd.read_csv(run / "report" / "significance_users.csv")
    stored = TrialStore(run)
    values = stored.per_user(stored.records())
    checked = 0
    for r in users.itertuples():
        group = values[(values["dataset"] == r.dataset) & (values["task"] == r.task)]
        means = group.groupby(["user", "variant"])[r.metric].mean().unstack("variant").dropna()
        a, b = means[r.variant_a].to_numpy(), means[r.variant_b].to_numpy()
        assert len(a) == r.n_users
        d = a - b
        if np.std(d) > 0:
            assert r.t_p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9, abs=1e-12)
        if np.any(d != 0):
            assert r.wilcoxon_p == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-9, abs=1e-12)
            # an independent sign-flip test (other seed, more draws): equal within Monte-Carlo error
            rng = np.random.default_rng(12345)
            flips = rng.choice([-1.0, 1.0], size=(40_000, len(d)))
            ref = (np.sum(np.abs(flips @ d) >= abs(d.sum()) * (1 - 1e-12)) + 1) / (40_001)
            se = np.sqrt(max(ref * (1 - ref), 1e-4) * (1 / 10_000 + 1 / 40_000))
            assert abs(r.randomization_p - ref) <= 4 * se + 2e-4
        higher = not r.metric.removeprefix("full_").startswith(("rmse", "mae"))
        better = d > 0 if higher else d < 0
        worse = d < 0 if higher else d > 0
        assert (r.wins, r.ties, r.losses) == (better.sum(), (d == 0).sum(), worse.sum())
        checked += 1
    assert checked >= 20
    family = users[(users["metric"] == "full_ndcg@10") & (users["task"] == "ranking")]
    assert len(family) == 6  # gmf, mf, ease, popularity: every pair


def _trials(out: Path) -> dict:
    return {trial_key(r): r["metrics"] for r in TrialStore(out).records()}


@pytest.mark.slow
def test_a_kill_between_the_per_user_file_and_its_record_reruns_that_trial(run, tmp_path):
    out = tmp_path / "killed"
    env = {**{k: v for k, v in os.environ.items() if k != "BENCH_KILL_AT"}, "BENCH_KILL_AT": "per-user:3"}
    cmd = [sys.executable, "-m", "bench", *ARGS, "--out", str(out)]
    assert subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=600).returncode != 0
    assert len(TrialStore(out).records()) == 2 and len(list((out / "per_user").glob("*.parquet"))) == 3
    env.pop("BENCH_KILL_AT")
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    assert _trials(out) == _trials(run)
    # a record whose per-user file is gone is not done: its trial runs again, with the same numbers
    victim = TrialStore(out).records()[-1]
    TrialStore(out).per_user_path(victim).unlink()
    res = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=600)
    assert "resuming:" in res.stdout + res.stderr
    assert TrialStore(out).per_user_path(victim).is_file()
    assert _trials(out) == _trials(run)
    lines = (out / "trials.jsonl").read_text().splitlines()
    assert len(lines) == len(_trials(run)) + 1  # the rerun appended the one trial, which replaces its record
    assert json.loads(lines[-1])["variant"] == victim["variant"]


def test_sign_flip_p_matches_the_exact_enumeration():
    from bench.analysis.stats import sign_flip_p, sign_flip_ps

    # three users, all +1: of the 8 equally likely sign patterns only ±(1, 1, 1) reach |mean| = 1
    assert sign_flip_p(np.ones(3)) == pytest.approx(0.25, abs=0.015)
    d = np.array([0.3, -0.1, 0.2, 0.25, 0.05])
    exact = np.mean([abs(np.dot(s, d)) >= abs(d.sum()) - 1e-12
                     for s in np.array(np.meshgrid(*[[-1, 1]] * 5)).T.reshape(-1, 5)])
    assert sign_flip_p(d) == pytest.approx(exact, abs=0.015)
    both = sign_flip_ps(np.stack([d, np.zeros(5)], axis=1))
    assert both[0] == sign_flip_p(d) and np.isnan(both[1])

"""Optuna's private names the harness relies on, each exercised as the harness uses it: an Optuna
release that renames or changes one fails here, by name (bench/compute/optuna_api.py)."""

from __future__ import annotations

import re
import sqlite3
from importlib.metadata import version
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from packaging.requirements import Requirement

from bench.compute import optuna_api
from tests.conftest import ROOT


def _study(tmp_path: Path, heartbeat: int | None = None) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=heartbeat)
    return optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))


def test_the_installed_optuna_is_within_the_range_the_adapter_was_checked_against():
    spec = Requirement(re.search(r'"(optuna[<>=!~,.0-9 ]*)"', (ROOT / "pyproject.toml").read_text()).group(1))
    assert any(s.operator == "<" for s in spec.specifier), "optuna needs an upper bound"
    assert version("optuna") in spec.specifier


def test_a_reopened_trial_keeps_what_it_drew_and_draws_the_rest(tmp_path):
    study = _study(tmp_path)
    trial = study.ask()
    x = trial.suggest_float("x", 0, 1)
    left = study.get_trials(deepcopy=False)[0]  # what a kill leaves: RUNNING, x drawn, y not
    again = optuna_api.reopen(study, left)
    assert again.number == trial.number and optuna_api.trial_id(again) == optuna_api.trial_id(left)
    assert again.suggest_float("x", 0, 1) == x
    again.suggest_int("y", 1, 3)
    assert set(optuna_api.stored(study, again).params) == {"x", "y"}
    assert optuna_api.stored(study, again).state == TrialState.RUNNING


def test_a_system_attr_written_through_the_adapter_is_stored(tmp_path):
    study = _study(tmp_path)
    trial = study.ask()
    optuna_api.set_system_attr(study, optuna_api.trial_id(trial), "completed_rung_0", 0.5)
    assert study.get_trials()[0].system_attrs["completed_rung_0"] == 0.5


@pytest.mark.filterwarnings("ignore:Heartbeat of storage", "ignore::optuna.exceptions.ExperimentalWarning")
def test_a_heartbeat_thread_records_the_trials_beat(tmp_path):
    """What other workers' fail_stale_trials reads to know a shared study's trial alive."""
    study = _study(tmp_path, heartbeat=60)
    trial = study.ask()
    beat = optuna_api.heartbeat(study, trial)
    beat.start()
    beat.join()
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT trial_id FROM trial_heartbeats").fetchall() == [(optuna_api.trial_id(trial),)]


def test_successive_halving_writes_its_rung_marks_through_a_view_posing_as_storage():
    """PrunerView depends on this: the pruner marks rungs through ``study._storage``."""
    marks: dict[str, float] = {}

    class View:
        direction = optuna.study.StudyDirection.MAXIMIZE

        def __init__(self) -> None:
            optuna_api.pose_as_storage(self)

        def get_trials(self, deepcopy: bool = False, states=None) -> list[FrozenTrial]:
            return []

        def set_trial_system_attr(self, trial_id: int, key: str, value: float) -> None:
            marks[key] = value

    frozen = FrozenTrial(0, TrialState.RUNNING, None, None, None, {}, {}, {}, {}, {1: 0.7}, 0)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, min_early_stopping_rate=0)
    assert pruner.prune(View(), frozen) is False  # the first trial at its rung goes on
    assert marks == {"completed_rung_0": pytest.approx(0.7)}

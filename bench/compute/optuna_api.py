"""Every use of Optuna's private API, in one place, so that an Optuna release that changes one of
them fails ``tests/bench/compute/test_optuna_api.py`` by name rather than a tuned run at its first kill.

The harness needs four things Optuna keeps private: a trial's storage id (to reopen a trial a kill
left RUNNING, with the same number and parameters), the storage itself (to read a trial as stored
and to write the rung marks successive halving sets), the heartbeat thread of a trial (a shared
study's workers keep their trials alive while a stack trains), and the storage slot a pruner reads
(``PrunerView`` poses as its own storage). ``pyproject.toml`` bounds Optuna above at the newest
release these were checked against.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna
from optuna.trial import FrozenTrial


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    return trial._trial_id


def reopen(study: optuna.Study, trial: FrozenTrial) -> optuna.Trial:
    """A trial a kill left RUNNING, as a live trial: what it has drawn stays, the rest it draws now."""
    return optuna.Trial(study, trial._trial_id)


def stored(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> FrozenTrial:
    """The trial as its storage holds it now (a shared study's other workers may have failed it)."""
    return study._storage.get_trial(trial._trial_id)


def set_system_attr(study: optuna.Study, trial_id: int, key: str, value: Any) -> None:
    study._storage.set_trial_system_attr(trial_id, key, value)


def heartbeat(study: optuna.Study, trial: optuna.Trial) -> threading.Thread:
    """A thread that beats for ``trial`` until joined (a no-op thread where the storage has none)."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial._trial_id, study._storage)


def pose_as_storage(view: Any) -> None:
    """Optuna's pruners write rung marks through ``study._storage``: a view of the study that should
    receive them (and read trials itself) names itself as that storage."""
    view._storage = view

"""Study storage: any SQLAlchemy URL, SQLite in the run folder by default, shared by several
workers with Optuna's heartbeat."""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy

from bench.search import GRACE_S, HEARTBEAT_S
from ncf_core import DataError

MAX_RETRY = 2


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Optuna's "experimental" notices and re-reports of a resumed trial's steps are not news here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*already reported.*")
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")
        yield


def storage_for(url: str, heartbeat: float = HEARTBEAT_S, grace: float = GRACE_S,
                shared: bool = True) -> optuna.storages.BaseStorage:
    """An RDB storage. Shared by several workers, with Optuna's heartbeat: a worker that dies mid-trial
    stops beating, and after ``grace`` seconds the next worker marks its trial FAIL and re-queues its
    parameters (up to MAX_RETRY times). SQLite waits for the lock instead of failing."""
    kwargs: dict[str, Any] = {}
    if shared:
        kwargs = {"heartbeat_interval": heartbeat, "grace_period": grace}
        with quiet():
            if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
                kwargs["heartbeat_stale_trial_callback"] = optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY)
            else:
                kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRY)
    if url.startswith("sqlite:///"):
        try:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(url, f"cannot create the database's folder ({err.strerror})") from None
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    for attempt in range(5):
        try:
            with quiet():
                return optuna.storages.RDBStorage(url, **kwargs)
        except sqlalchemy.exc.ArgumentError:
            raise DataError(url, "not a database URL (e.g. sqlite:///path/optuna.db, postgresql://...)") from None
        except ImportError as err:
            raise DataError(url, f"no database driver for this URL: {err}") from None
        except sqlalchemy.exc.SQLAlchemyError as err:
            # Workers started together race to create the schema; the loser finds it made.
            if attempt == 4:
                raise DataError(url, f"cannot open the study storage: {str(err.orig if hasattr(err, 'orig') else err)}"
                                     .splitlines()[0]) from None
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def create_study(name: str, storage: optuna.storages.BaseStorage, **kwargs: Any) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for attempt in range(5):
        try:
            return optuna.create_study(study_name=name, storage=storage, load_if_exists=True, **kwargs)
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == 4:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")

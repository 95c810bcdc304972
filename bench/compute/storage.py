"""Study storage: any SQLAlchemy URL, SQLite in the run folder by default, shared by several
workers with Optuna's heartbeat; each study's name, and the protocol a run's own study keeps."""

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

from bench import layout
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


def protocol_difference(stored: dict[str, Any] | None, planned: dict[str, Any]) -> str | None:
    """How a study's stored ``protocol`` differs from a run's, in words (None: it does not, or none is stored)."""
    if stored is None:
        return None
    for key in sorted(set(stored) | set(planned)):
        if key == "data" and key not in stored:
            continue  # a study from before data fingerprints
        if key == "data" and stored[key] != planned.get(key):
            return (f"was run on other data under the same label (data fingerprint {stored[key]}; this run's "
                    f"{planned.get(key)}); use another --out")
        if stored.get(key) != planned.get(key):
            flag = {"stack": "tune-stack", "sampler_seed": "sampler-seed"}.get(key, key)
            return (f"was run with {key} = {stored.get(key)!r} (this run: {planned.get(key)!r}); use another --out, "
                    f"or --{flag} {stored.get(key)}")
    return None


def keep_protocol(study: optuna.Study, planned: dict[str, Any], where: Path, what: str) -> None:
    """Record a study's protocol when it is new; refuse to go on under another."""
    stored = study.user_attrs.get("protocol")
    if stored is None:
        study.set_user_attr("protocol", planned)
    diff = protocol_difference(stored, planned)
    if diff:
        raise DataError(where, f"{what} {diff}")


def stored_protocols(path: Path) -> dict[str, dict[str, Any]]:
    """Each study's protocol in a run's SQLite file, read only where the file exists (it writes nothing)."""
    if not path.is_file():
        return {}
    with quiet():
        summaries = optuna.get_all_study_summaries(storage_for(f"sqlite:///{path}", shared=False),
                                                   include_best_trial=False)
    return {s.study_name: s.user_attrs.get("protocol") for s in summaries}


def study_name(spec: Any, variant: str) -> str:
    return f"{layout.file_label(spec.label)}-{spec.task}-{variant}"


def protocol(settings: Any, threads: int) -> dict[str, Any]:
    """What a study's trials depend on beyond its data set, variant and budget (a larger budget
    continues the same search): the pruner, the stack, the sampler's seed, and on a CPU the torch
    threads, which change an MLP's numbers; and the data's fingerprint. ``settings``: a ``StudySettings``."""
    return {"pruner": settings.pruner, "stack": settings.stack, "sampler_seed": settings.sampler_seed,
            "threads": threads if settings.device == "cpu" else None, "data": settings.spec.fingerprint or None}


def protocol_conflict(studies: list[tuple[str, Any]], threads: int) -> DataError | None:
    """The first of a run's own ``(variant, StudySettings)`` studies stored under another protocol."""
    read: dict[Path, dict[str, dict[str, Any]]] = {}
    for variant, settings in studies:
        path = Path(settings.folder) / layout.STUDIES
        if path not in read:
            read[path] = stored_protocols(path)
        diff = protocol_difference(read[path].get(study_name(settings.spec, variant)), protocol(settings, threads))
        if diff:
            return DataError(path, f"the {variant} study on {settings.spec.label} {diff}")
    return None

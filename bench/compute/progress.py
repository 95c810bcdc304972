"""Epochs as they end: what moves a run's progress bar inside a long job (a study can take an hour).

The process running a job is given a sink for it (``bench.run.pool``); the compute layer calls
``epoch()`` when a model (a trial, a seed) ends an epoch. Without a sink (Ray, a direct call) it
does nothing. Inside ``unmeasured()`` the work's speed is no result (a unit's refit: its samples/s
are not reported), so a pool may give it the cores left idle beside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

_sinks: list[Callable[[], None]] = []  # per process: the running job's, innermost last
_unmeasured: list[bool] = []  # per process: inside ``unmeasured()``


@contextlib.contextmanager
def reporting(sink: Callable[[], None]) -> Iterator[None]:
    _sinks.append(sink)
    try:
        yield
    finally:
        _sinks.remove(sink)


def epoch() -> None:
    if _sinks:
        _sinks[-1]()


@contextlib.contextmanager
def unmeasured() -> Iterator[None]:
    _unmeasured.append(True)
    try:
        yield
    finally:
        _unmeasured.pop()


def measured() -> bool:
    """Whether the running work's speed is a result: its threads must stay what they were."""
    return not _unmeasured

"""Epochs as they end: what moves a run's progress bar inside a long job (a study can take an hour).

The process running a job is given a sink for it (``bench.run.pool``); the compute layer calls
``epoch()`` when a model (a trial, a seed) ends an epoch. Without a sink (Ray, a direct call) it
does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

_sinks: list[Callable[[], None]] = []  # per process: the running job's, innermost last


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

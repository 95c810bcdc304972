"""Fault injection for the harness's own tests: kill this process at a named point.

``BENCH_KILL_AT="point:N"`` (comma-separated for several) makes the process that reaches ``point``
for the N-th time SIGKILL itself there, as the OOM killer or a lost machine would;
``point:N:int`` sends it SIGINT instead, as Ctrl-C does. Tests use it to kill a run after N stored
trials, inside a study's epoch or in a worker, at a chosen point rather than racing a clock. Unset,
``point`` costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "BENCH_KILL_AT"
_seen: dict[str, int] = {}  # per process: how often each point was reached


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    for entry in spec.split(","):
        where, count, how = (entry.split(":") + ["1", "kill"])[:3]
        if where == name:
            _seen[name] = _seen.get(name, 0) + 1
            if _seen[name] == int(count):
                os.kill(os.getpid(), signal.SIGINT if how == "int" else signal.SIGKILL)

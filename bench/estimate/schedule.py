"""The wall time of a plan's jobs on its workers, scheduled as the pool schedules them."""

from __future__ import annotations

import heapq
from typing import Any

from bench.run.pool import Job, priorities


def makespan(jobs_list: list[Job], workers: int, seconds: dict[tuple, float]) -> float:
    """Wall time of the jobs on ``workers`` workers, scheduled as the pool schedules them (longest
    path first, each job once its dependencies are done), each taking its ``seconds``: a job trains
    on its share of the cores whatever runs beside it (``bench.run.pool``). Event-driven with heaps,
    so a plan of 10^5 units is priced in a second."""
    rank = priorities(jobs_list)
    workers = max(1, min(workers, len(jobs_list)))
    order = {j.key: n for n, j in enumerate(sorted(jobs_list, key=lambda j: -rank[j.key]))}
    waits = {j.key: len(j.after) for j in jobs_list}
    dependents: dict[Any, list[Any]] = {j.key: [] for j in jobs_list}
    for j in jobs_list:
        for k in j.after:
            dependents[k].append(j.key)
    ready = [(order[k], k) for k, n in waits.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int, Any]] = []  # (when it ends, its order, key)
    clock, finished = 0.0, 0
    while ready or running:
        while ready and len(running) < workers:
            n, key = heapq.heappop(ready)
            heapq.heappush(running, (clock + seconds.get(key, 0.0), n, key))
        clock, _, key = heapq.heappop(running)
        finished += 1
        for d in dependents[key]:
            waits[d] -= 1
            if waits[d] == 0:
                heapq.heappush(ready, (order[d], d))
    if finished < len(jobs_list):
        raise ValueError(f"jobs wait on each other: {[k for k, n in waits.items() if n > 0]}")
    return clock

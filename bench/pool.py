"""A local pool of worker processes for work with dependencies: tuning studies, seeded units.

Small models train faster on one thread than on two (kernel launch and synchronisation dominate a
batch of 256), so on a CPU the harness gets its speed from processes, each with its share of the
cores, rather than from intra-op threads. ``jobs == 1`` runs everything here, in order, without a
pool. Tasks are listed after the tasks they depend on; among those ready, the earlier listed start
first, so the caller puts the long chains first.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Task:
    key: Hashable
    fn: Callable[..., Any]  # a module-level function: it is pickled by name for the worker
    args: Callable[[dict[Hashable, Any]], tuple]  # the call's arguments, given the results so far
    after: tuple[Hashable, ...] = field(default=())  # keys whose results ``args`` needs


def threads_per_job(jobs: int, cores: int) -> int:
    return max(1, cores // max(1, jobs))


def _start_worker(threads: int, parent: int) -> None:
    """A worker dies with the run: after a SIGKILL of the driver no orphan keeps writing to a study."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the driver died before the line above
        os._exit(1)
    import torch

    torch.set_num_threads(threads)


def run_tasks(tasks: list[Task], jobs: int, threads: int,
              started: Callable[[Task], None] = lambda t: None) -> Iterator[tuple[Task, Any]]:
    """Yield ``(task, result)`` as tasks finish. A task's exception is raised here, and the pool's
    workers are terminated: nothing keeps computing for a run that has stopped."""
    results: dict[Hashable, Any] = {}
    keys = {t.key for t in tasks}
    for t in tasks:
        missing = [k for k in t.after if k not in keys and k not in results]
        if missing:
            raise ValueError(f"task {t.key!r} depends on unlisted {missing}")
    jobs = min(jobs, len(tasks))  # a worker for nothing still costs a torch import
    if jobs <= 1:
        for t in tasks:
            started(t)
            results[t.key] = t.fn(*t.args(results))
            yield t, results[t.key]
        return
    # spawn, not fork: a forked child of a process whose OpenMP pool has started can hang.
    pool = multiprocessing.get_context("spawn").Pool(jobs, initializer=_start_worker,
                                                       initargs=(threads, os.getpid()))
    finished: queue.SimpleQueue = queue.SimpleQueue()
    waiting, running = list(tasks), 0
    try:
        while waiting or running:
            ready = [t for t in waiting if all(k in results for k in t.after)]
            if not ready and not running:
                raise ValueError(f"tasks wait on each other: {[t.key for t in waiting]}")
            for t in ready[:jobs - running]:  # no more than the pool runs, so that order is priority
                waiting.remove(t)
                running += 1
                started(t)
                pool.apply_async(t.fn, t.args(results),
                                 callback=lambda r, t=t: finished.put((t, r, None)),
                                 error_callback=lambda e, t=t: finished.put((t, None, e)))
            t, result, error = finished.get()
            running -= 1
            if error is not None:
                raise error
            results[t.key] = result
            yield t, result
    finally:
        pool.terminate()
        pool.join()

"""Jobs with dependencies, run in this process or in a pool of worker processes.

Two jobs on one thread each train small models faster than one job on two threads (kernel launch
and synchronisation dominate a batch of 256), so on a CPU the harness gets its speed from processes,
each with its share of the cores, rather than from intra-op threads. The pool is the standard
library's ``ProcessPoolExecutor`` (spawned workers, not forked: a forked child of a process whose
OpenMP pool has started can hang); this module adds the dependencies and the order: among the jobs
whose dependencies are done, the one with the longest estimated path to the end of the run starts
first. Every job trains on the threads the run gives every job (the cores over ``--jobs``),
whatever runs beside it and whenever it starts: a model's numbers depend on its thread count (an
MLP's weights after 300 ML-1M steps differ by up to 0.06 between one thread and two: matmul
gradients are summed in another order), so a job that took idle cores would train other numbers in
a run whose timing differed, and a resumed run would not equal an uninterrupted one. A worker that
dies (the OOM killer, a SIGKILL) ends the run at once with a one-line error naming its job; what
was stored stays stored.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from bench.compute import progress
from ncf_core import DataError

REPORT_S = 1.0  # how often the driver collects the workers' ended epochs
# Starting two spawned workers (each imports torch, pandas, optuna) and stopping them at the end: 5.6 s
# on a 2-core AMD EPYC (a smoke run's MF, 2026-12-08), against about 2 s of training.
POOL_START_S = 6.0


@dataclass(frozen=True)
class Job:
    key: Hashable
    fn: Callable[..., Any]  # a module-level function: it is pickled by name for the worker
    args: tuple = ()  # plain arguments; the call is fn(*args, data, *results of ``after``)
    after: tuple[Hashable, ...] = field(default=())
    data: int | None = None  # which of the run's data sets the call takes after ``args``
    name: str = ""  # what an error message calls it
    cost: float = 1.0  # estimated seconds: the order is longest path first
    device: str = "cpu"
    local: bool = False  # must run on the driver's node (a study: its database is in the run folder)


def threads_per_job(jobs: int, cores: int) -> int:
    return max(1, cores // max(1, jobs))


def pool_pays(seconds: float, workers: int) -> bool:
    """Whether ``workers`` processes repay their start on work of ``seconds`` (on one of them):
    the time they save if it shares out evenly, against ``POOL_START_S``."""
    return workers > 1 and seconds * (1 - 1 / workers) > POOL_START_S


def priorities(jobs: list[Job]) -> dict[Hashable, float]:
    """Each job's estimated cost plus that of its longest chain of dependents."""
    keys = {j.key for j in jobs}
    for j in jobs:
        missing = [k for k in j.after if k not in keys]
        if missing:
            raise ValueError(f"job {j.key!r} depends on unlisted {missing}")
    dependents: dict[Hashable, list[Job]] = {j.key: [] for j in jobs}
    for j in jobs:
        for k in j.after:
            dependents[k].append(j)
    out: dict[Hashable, float] = {}
    state: dict[Hashable, int] = {}

    def visit(job: Job) -> float:
        if state.get(job.key) == 1:
            raise ValueError(f"jobs wait on each other: {job.key!r}")
        if job.key not in out:
            state[job.key] = 1
            out[job.key] = job.cost + max((visit(d) for d in dependents[job.key]), default=0.0)
            state[job.key] = 2
        return out[job.key]

    for j in jobs:
        visit(j)
    return out


def _call(fn: Callable[..., Any], threads: int, *args: Any) -> Any:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*args)
    finally:  # in the driver's process (one worker), its own count again
        torch.set_num_threads(before)


_epochs: Any = None  # in a worker: the queue its jobs' ended epochs go to (set by _start_worker)


class _Sender:
    """A job's ended epochs, sent to the driver as (key, count) at most twice a report period: on
    tiny data a job ends hundreds of epochs a second, which would fill the pipe and stall it."""

    def __init__(self, key: Hashable, put: Callable[[tuple[Hashable, int]], Any]) -> None:
        self.key, self.put, self.count, self.sent = key, put, 0, time.monotonic()

    def __call__(self) -> None:
        self.count += 1
        if time.monotonic() - self.sent >= REPORT_S / 2:
            self.put((self.key, self.count))
            self.count, self.sent = 0, time.monotonic()


def call_sending(key: Hashable, put: Callable[[tuple[Hashable, int]], Any], fn: Callable[..., Any],
                 threads: int, *args: Any) -> Any:
    """``_call`` away from the driver, the epochs the job ends sent to it through ``put``."""
    with progress.reporting(_Sender(key, put)):
        return _call(fn, threads, *args)


def _call_reporting(key: Hashable, fn: Callable[..., Any], threads: int, *args: Any) -> Any:
    """``_call`` in a worker, the epochs it ends put on the queue the worker was started with."""
    return call_sending(key, _epochs.put, fn, threads, *args)


def _start_worker(parent: int, epochs: Any) -> None:
    """A worker dies with the run: after a SIGKILL of the driver no orphan keeps writing to a study."""
    global _epochs
    _epochs = epochs
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the driver died before the line above
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it ends the pool


def run_jobs(jobs: list[Job], workers: int, threads: int, datasets: list[Any],
             started: Callable[[Job, int], None] = lambda job, threads: None,
             epoch: Callable[[Hashable, int], None] = lambda key, n: None) -> Iterator[tuple[Job, Any]]:
    """Yield ``(job, result)`` as jobs finish; ``epoch(key, n)`` when models of a running job have
    ended ``n`` more epochs. A job's exception is raised here and the workers are stopped: nothing
    keeps computing for a run that has stopped."""
    rank = priorities(jobs)
    waiting = sorted(jobs, key=lambda j: -rank[j.key])
    results: dict[Hashable, Any] = {}

    def arguments(job: Job) -> tuple:
        data = () if job.data is None else (datasets[job.data],)
        return (*job.args, *data, *(results[k] for k in job.after))

    def ready() -> list[Job]:
        return [j for j in waiting if all(k in results for k in j.after)]

    workers = min(workers, len(jobs))
    if workers <= 1:
        while waiting:
            job = ready()[0]
            waiting.remove(job)
            started(job, threads)
            with progress.reporting(lambda key=job.key: epoch(key, 1)):
                results[job.key] = _call(job.fn, threads, *arguments(job))
            yield job, results[job.key]
        return
    context = multiprocessing.get_context("spawn")
    epochs = context.SimpleQueue()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                               initargs=(os.getpid(), epochs))
    running: dict[Future, Job] = {}
    finished = False
    try:
        while waiting or running:
            for job in ready()[: workers - len(running)]:
                waiting.remove(job)
                started(job, threads)
                running[pool.submit(_call_reporting, job.key, job.fn, threads, *arguments(job))] = job
            if not running:
                raise ValueError(f"jobs wait on each other: {[j.key for j in waiting]}")
            done, _ = wait(running, timeout=REPORT_S, return_when=FIRST_COMPLETED)
            while not epochs.empty():
                epoch(*epochs.get())
            for future in sorted(done, key=lambda f: -rank[running[f].key]):
                job = running.pop(future)
                try:
                    results[job.key] = future.result()
                except BrokenProcessPool:
                    raise DataError(job.name or str(job.key), "its worker process died (killed, or out of memory?); "
                                    "the trials stored so far are kept: run the same command again to resume") from None
                yield job, results[job.key]
        finished = True
    finally:
        _stop(pool, kill=not finished)


def _stop(pool: ProcessPoolExecutor, kill: bool) -> None:
    """A finished run lets its idle workers exit (their semaphores, tqdm's among them, are released:
    a killed one leaves the resource tracker to warn of a leak); a stopped run cancels what has not
    started and kills what has, so that no worker goes on computing."""
    if not kill:
        pool.shutdown(wait=True)
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # the executor keeps no public handle
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.kill()
    for p in processes:
        p.join()

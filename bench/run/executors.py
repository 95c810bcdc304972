"""Executors move jobs and results; they compute nothing themselves and never write the store.

``PoolExecutor`` runs the jobs in this process (one job) or in local worker processes
(``bench run --jobs N``), each on its share of the cores. ``RayExecutor`` runs each job as a Ray
task asking for what it needs (a GPU for a CUDA unit, CPUs otherwise), on a local Ray instance or
an existing cluster: a job's dependencies are its tasks' object references, each data set is put
in Ray's object store once, and the studies run on the driver's node, where the run folder (and
their database) is. Ray is imported only for ``--ray``: here, and by ``bench run`` to say when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

from bench.run.pool import REPORT_S, Job, call_sending, run_jobs


class PoolExecutor:
    def __init__(self, workers: int, threads: int) -> None:
        self.workers, self.threads = workers, threads

    def execute(self, jobs: list[Job], datasets: list[Any],
                started: Callable[[Job, int], None] = lambda job, threads: None,
                epoch: Callable[[Hashable, int], None] = lambda key, n: None) -> Iterator[tuple[Job, Any]]:
        yield from run_jobs(jobs, self.workers, self.threads, datasets, started, epoch)


class RayExecutor:
    def __init__(self, address: str | None = None, threads: int = 1) -> None:
        self.address, self.threads = address, threads

    def execute(self, jobs: list[Job], datasets: list[Any],
                started: Callable[[Job, int], None] = lambda job, threads: None,
                epoch: Callable[[Hashable, int], None] = lambda key, n: None) -> Iterator[tuple[Job, Any]]:
        """A task's ended epochs come back through a Ray queue (an actor holding no CPU), read
        between waits, as the pool reads its workers' pipe."""
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if not ray.is_initialized():
            ray.init(address=self.address or None, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, namespace="ncf-bench")
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        remote = ray.remote(call_sending)
        epochs = Queue(actor_options={"num_cpus": 0})
        data_refs = {i: ray.put(d) for i, d in enumerate(datasets)}  # once per data set
        refs: dict[Any, Any] = {}
        by_ref: dict[Any, Job] = {}
        for job in jobs:  # listed after their dependencies (the planner's order)
            data = () if job.data is None else (data_refs[job.data],)
            if job.device == "cuda":
                options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
            else:
                options = {"num_cpus": max(1, min(self.threads, cpus))}
            if job.local:
                options["scheduling_strategy"] = here
            ref = remote.options(**options, max_retries=3).remote(  # refs as arguments: Ray resolves them
                job.key, epochs.put, job.fn, self.threads, *job.args, *data, *(refs[k] for k in job.after))
            refs[job.key] = ref
            by_ref[ref] = job
        pending, begun, by_key = list(by_ref), set(), {j.key: j for j in jobs}

        def begin(job: Job) -> None:  # Ray says when a task was submitted, not when it began: its first epoch
            if job.key not in begun:
                begun.add(job.key)
                started(job, self.threads)

        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=REPORT_S)
            ended = epochs.qsize()
            for key, n in epochs.get_nowait_batch(ended) if ended else ():
                begin(by_key[key])
                epoch(key, n)
            if done:
                begin(by_ref[done[0]])
                yield by_ref[done[0]], ray.get(done[0])

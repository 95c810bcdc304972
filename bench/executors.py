"""Executors: who computes the units the runner planned. The runner stays the store's only writer.

``LocalExecutor`` runs them in this process, in order. ``PoolExecutor`` runs them in local worker
processes (``bench run --jobs N``), each with its share of the cores. ``RayExecutor`` runs each unit as a Ray task
with the resources it needs (a GPU for a CUDA unit, CPUs otherwise), on a local Ray instance or an
existing cluster; a pretrained NeuMF's unit depends on its seed group's GMF and MLP units through
their object references, not by waiting in a loop; each data set is put in Ray's object store once,
and reaches a node once. Ray is imported only here, and only for ``--ray``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from bench.suites import PRETRAIN_BASES, VARIANTS, chain_rank


class LocalExecutor:
    def execute(self, runner: Any, specs: list[tuple[Any, Any]], units: list[Any]) -> Iterator[dict[str, Any]]:
        for unit in units:
            spec, data = specs[unit.dataset]
            yield from runner.compute(spec, data, unit)


def compute_unit(suite: Any, opts: Any, out_dir: str, tuning: dict, threads: int, spec: Any, data: Any, unit: Any,
                 *bases: tuple[list[dict[str, Any]], dict[str, torch.nn.Module]]):
    """A unit in a worker process: the runner's own code, with the GMF/MLP of ``bases`` in its cache.
    Returns the unit's records and, for a GMF or MLP, the trained models its dependents start from."""
    from dataclasses import replace

    from bench.runner import Runner

    torch.set_num_threads(threads)
    # The driver has tuned already (its settings are in opts.params); a worker only computes.
    runner = Runner(suite, replace(opts, tune=0), out_dir, log=lambda _: None)
    runner.tuning = tuning
    runner._group, runner._splits = (unit.dataset, unit.group), {}  # so that compute keeps the bases
    for _, models in bases:
        runner.pretrain.memory.update(models)
    records = runner.compute(spec, data, unit)
    trained = {k: m.cpu() for k, m in runner.pretrain.memory.items()} if unit.variant in ("gmf", "mlp") else {}
    return records, trained


def bases_of(unit: Any, earlier: Any) -> list[Any]:
    """The GMF and MLP units (among ``earlier``) a pretrained NeuMF unit starts from."""
    if unit.variant.startswith("baseline-") or not VARIANTS[unit.variant].pretrained:
        return []
    return [u for u in earlier if (u.dataset, u.group, u.device) == (unit.dataset, unit.group, unit.device)
            and u.variant in PRETRAIN_BASES]


class PoolExecutor:
    """Units in ``jobs`` local worker processes of ``threads`` torch threads each. Throughput is then
    measured with the other jobs running beside it (the manifest records jobs and threads)."""

    def __init__(self, jobs: int, threads: int) -> None:
        self.jobs, self.threads = jobs, threads

    def execute(self, runner: Any, specs: list[tuple[Any, Any]], units: list[Any]) -> Iterator[dict[str, Any]]:
        from bench.pool import Task, run_tasks
        from bench.runner import training_pairs

        size = {i: training_pairs(spec, data) for i, (spec, data) in enumerate(specs)}
        last = chain_rank("")  # the long chains start first, the largest data set's first
        units = sorted(units, key=lambda u: (chain_rank(u.variant) == last, -size[u.dataset], u.dataset, u.group,
                                             u.device, chain_rank(u.variant)))
        tasks = []
        for unit in units:
            spec, data = specs[unit.dataset]
            deps = tuple(bases_of(unit, [t.key for t in tasks]))
            tasks.append(Task(unit, compute_unit, lambda results, spec=spec, data=data, unit=unit, deps=deps: (
                runner.suite, runner.opts, str(runner.store.run_dir), runner.tuning, self.threads, spec, data,
                unit, *[results[d] for d in deps]), deps))
        for _, (records, _) in run_tasks(tasks, self.jobs, self.threads):
            yield from records


class RayExecutor:
    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def execute(self, runner: Any, specs: list[tuple[Any, Any]], units: list[Any]) -> Iterator[dict[str, Any]]:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address or None, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        threads = torch.get_num_threads()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        remote = ray.remote(compute_unit)
        data_refs = {i: ray.put(data) for i, (_, data) in enumerate(specs)}  # once per data set
        refs: dict[Any, Any] = {}  # unit -> ObjectRef
        pending = []
        for unit in units:
            spec, _ = specs[unit.dataset]
            deps = [refs[u] for u in bases_of(unit, refs)]
            resources = {"num_gpus": 1, "num_cpus": 1} if unit.device == "cuda" else \
                {"num_cpus": max(1, min(threads, cpus))}
            ref = remote.options(**resources, max_retries=3).remote(
                runner.suite, runner.opts, str(runner.store.run_dir), runner.tuning, threads, spec,
                data_refs[unit.dataset], unit, *deps)
            refs[unit] = ref
            pending.append(ref)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            records, _ = ray.get(done[0])
            yield from records

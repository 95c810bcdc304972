"""Run a suite: plan its studies and seeded units as one graph, resume what is stored, hand the
work to an executor, and store every record as it comes back (this process is the store's only
writer, whatever computed the record).

Trial = (data set, variant, device, seed, config). One seed fixes split, test negatives,
initialisation and data order for every variant, so comparisons are paired by seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import faults
from bench.compute.storage import protocol_conflict
from bench.configs import COMPARED, Resolved, config_difference, resolved_settings
from bench.estimate.eta import TimeLeft
from bench.estimate.schedule import makespan
from bench.estimate.work import expected_epochs, relative_costs, rough_seconds
from bench.run.console import describe_plan, one_line
from bench.run.datasets import resolve_datasets
from bench.run.executors import PoolExecutor
from bench.run.options import RunOptions, cpu_cores, resolve_devices
from bench.run.plan import Plan, jobs, make_plan
from bench.run.pool import Job, pool_pays, threads_per_job
from bench.run.store import TrialStore, stored_suite, trial_key
from bench.suites import Suite
from bench.variants import PRETRAIN_BASES, VARIANTS
from ncf_core import DataError
from ncf_core.baselines import memory_problem

Log = Callable[[str], None]


class Runner:
    def __init__(self, suite: Suite, opts: RunOptions, out_dir: Path, log: Log = print, executor: Any = None) -> None:
        self.suite, self.opts, self.log = suite, opts, log
        self.devices = resolve_devices(opts.devices or suite.devices)
        self.jobs = opts.jobs or (cpu_cores() if self.devices == ("cpu",) else 1)
        self.threads = opts.threads or threads_per_job(self.jobs, cpu_cores())
        if executor is not None:  # its jobs train on the threads it gives them (Ray: every core, by default)
            self.threads = executor.threads
        self.executor = executor  # else a pool of ``workers`` (_execute)
        self.workers = self.jobs  # what ran at once: --jobs, or one where workers would not pay
        self.budget = opts.tune if opts.tune is not None else suite.tune
        if self.budget and opts.params:
            raise DataError("--tune", "tunes every variant itself: leave out --params")
        self.store = TrialStore(out_dir)
        self.variants = opts.variants or suite.variants
        self.seeds = list(range(opts.seeds if opts.seeds is not None else suite.seeds))
        self.specs: list[tuple[Any, Any]] = []
        self.resolved: dict[tuple[int, str], Resolved] = {}  # (data set, variant): its settings, worked out once
        self.tuning: dict[str, Any] = {}
        self.plan: Plan | None = None

    def load(self) -> list[tuple[Any, Any]]:
        """The data sets, and every setting checked against them, before anything is written."""
        self.store.check_folder()  # before the data load: a wrong --out is said at once
        before = stored_suite(self.store.run_dir)
        if before is not None and before != self.suite.name:
            raise DataError(self.store.run_dir, f"holds a {before} run: a {self.suite.name} run would share its "
                                                f"tables; give another --out (or --suite {before} to resume it)")
        self.specs = resolve_datasets(self.suite, self.opts, self.log)
        self._check_params()
        self.resolved = resolved_settings(self.specs, self.variants, self.suite.baselines, self.opts.params)
        for index, (spec, data) in enumerate(self.specs):
            for name in self.variants:
                if VARIANTS[name].reference and VARIANTS[name].applies(spec.task):
                    self._check_reference(spec, data, self.resolved[index, name])
        return self.specs

    def _check_reference(self, spec: Any, data: Any, settings: Resolved) -> None:
        """A reference that would not fit in memory at its settings: refused when asked for by name,
        said (its trials then fail with the same line) when it comes with the suite."""
        variant = settings.variant
        problem = memory_problem(variant.model, data.n_users, data.n_items, settings.reference)  # Interactions or Split
        if problem and self.opts.variants:
            raise DataError("--variants", f"{variant.name} on {spec.label}: {problem}")
        if problem:
            self.log(f"warning: {variant.name} on {spec.label} will fail: {problem}")

    def _check_params(self) -> None:
        """A --params entry must name a variant and, where it is scoped, a data set and task of this run."""
        present = {(spec.label, spec.task) for spec, _ in self.specs}
        for entry in self.opts.params.entries:
            if entry["variant"] not in VARIANTS:
                raise DataError("--params", f"{entry['variant']!r} is not a variant ({', '.join(VARIANTS)})")
            trained = {*self.variants, *(PRETRAIN_BASES if any(VARIANTS[v].pretrained for v in self.variants) else ())}
            if entry["variant"] not in trained:
                raise DataError("--params", f"settings for {entry['variant']}, which this run does not train "
                                            f"(--variants {','.join(self.variants)})")
            scope = (entry.get("dataset"), entry.get("task"))
            if not any(scope[0] in (None, label) and scope[1] in (None, task) for label, task in present):
                raise DataError("--params", f"settings for {entry['variant']} were tuned on {scope[0] or 'any set'} "
                                            f"({scope[1] or 'any task'}), which this run does not include")

    def make_plan(self, done: set[tuple]) -> Plan:
        self.plan = make_plan(self.specs, self.devices, self.seeds, self.variants, self.suite.baselines, done,
                              self.budget, self.opts, self.resolved)
        if self.plan.tuning:
            self.tuning = {**self.plan.tuning, "studies": {}}
        return self.plan

    def estimate(self, log: Log) -> tuple[Plan, dict[tuple, float], float, dict[tuple, tuple[float, float]],
                                          dict[str, float]]:
        """``--plan``: the plan of a fresh run in this folder's state, seconds per job from a short
        probe, and the wall time they add up to on this run's workers; for a tuned run also each
        unit's seconds and the wall time (``bounds``) with every winner at its study's cheapest and
        its costliest structure, and, where runs stop early, if early stopping stopped nothing.
        Writes nothing."""
        from bench.estimate.probe import measured_costs  # it trains models: imported only when asked

        plan = self._checked_plan(self.store.records())  # refused here as the real run would refuse it
        span: dict[tuple, tuple[float, float]] = {}
        unstopped: dict[tuple, float] = {}
        seconds = measured_costs(plan, self.threads, log, span, unstopped)
        self.workers = self._workers(sum(seconds.values()))
        work = jobs(plan, self.store.run_dir, self.workers, self.devices[0], seconds)
        bounds = {name: makespan(work, self.workers, {**seconds, **{k: v[end] for k, v in span.items()}})
                  for end, name in enumerate(("cheapest", "costliest")) if span}
        if unstopped:
            bounds["unstopped"] = makespan(work, self.workers, {**seconds, **unstopped})
        return plan, seconds, makespan(work, self.workers, seconds), span, bounds

    def _workers(self, seconds: float) -> int:
        """``--jobs`` as given; by default a worker per share of the cores, or none (this process)
        where the work would not repay their start (``pool_pays``). Jobs train on the same threads
        either way, so the numbers do not depend on it."""
        if self.executor is not None or self.opts.jobs is not None or pool_pays(seconds, self.jobs):
            return self.jobs
        return 1

    def run(self) -> list[dict[str, Any]]:
        """Run every pending trial; returns the records of this call (failed ones included). The run
        folder is locked for the whole call: a second ``bench run`` on it stops at once."""
        self.load()
        with self.store.locked():
            dropped = self.store.repair()
            if dropped:
                self.log(f"warning: {self.store.path}: dropped a torn last line ({dropped} bytes) left by a crash; "
                         "its trial runs again")
            records = self.store.records()
            if self.store.skipped:
                self.log(f"warning: {self.store.path}: skipped unreadable line(s) {self.store.skipped[:10]}")
            plan = self._checked_plan(records)
            if len(plan.pending) < len(plan.trials):
                self.log(f"resuming: {len(plan.trials) - len(plan.pending)} of {len(plan.trials)} trials stored")
            return self._execute(plan)

    def _checked_plan(self, records: list[dict[str, Any]]) -> Plan:
        """The plan of what is left, once the stored trials and studies are known to agree with this
        call's settings (``run`` and ``--plan`` both: a plan never promises what the run refuses)."""
        plan = self.make_plan(self.store.done(records))
        self._check_stored(plan, {trial_key(r): r for r in records})
        self._check_studies(plan)
        return plan

    def _check_stored(self, plan: Plan, stored: dict[tuple, dict[str, Any]]) -> None:
        """Stored trials run with other settings are refused, not mixed into one table. A tuned run's
        model and training settings are known only when its studies end: its data, variant and tuning
        protocol are compared now."""
        parts = COMPARED if not self.budget else ("data", "variant", "tuning")
        for index, (spec, _) in enumerate(plan.specs):
            for t in plan.trials:
                rec = stored.get(trial_key(t))
                if rec is None or rec["status"] != "ok" or (t["dataset"], t["task"]) != (spec.label, spec.task):
                    continue
                threads = rec.get("threads")
                if t["device"] == "cpu" and rec.get("epochs") and threads not in (None, self.threads):
                    raise DataError(self.store.path,
                                    f"{t['variant']} on {t['dataset']} seed {t['seed']} was trained on {threads} "
                                    f"thread{'s' * (threads != 1)} (this run: {self.threads}), which changes a "
                                    f"model's numbers; use another --out, or --threads {threads}")
                planned = plan.resolved[index, t["variant"]].config(plan.tuning)
                diff = config_difference(rec.get("config") or {}, planned, parts)
                if diff is not None:
                    raise DataError(self.store.path, f"{t['variant']} on {t['dataset']} seed {t['seed']} was run with "
                                                     f"{diff}; use another --out, or the settings it was run with")

    def _check_studies(self, plan: Plan) -> None:
        """A study stored under another pruner, stack, sampler seed or thread count is refused before
        anything runs: resumed, it would end as a mix of two searches."""
        if not plan.studies:
            return
        studies = [job.args for job in jobs(plan, self.store.run_dir, self.jobs, self.devices[0])
                   if job.key.study]
        conflict = protocol_conflict([(s.variant, settings) for s, settings in studies], self.threads)
        if conflict:
            raise conflict

    def _execute(self, plan: Plan) -> list[dict[str, Any]]:
        costs = relative_costs(plan)
        self.workers = self._workers(rough_seconds(costs))
        executor = self.executor or PoolExecutor(self.workers, self.threads)
        work = jobs(plan, self.store.run_dir, self.workers, self.devices[0], costs)
        if self.budget:
            self.log(f"tuning: {len(plan.studies)} studies of {self.budget} trials, "
                     + ", ".join(f"{k} at a time on {label}" for label, k in plan.stacks.items())
                     + (" (reference baselines one at a time)" if any(VARIANTS[s.variant].reference
                                                                      for s in plan.studies) else ""))
        results: list[dict[str, Any]] = []
        done_trials = len(plan.trials) - len(plan.pending)
        bar = tqdm(total=sum(j.cost for j in work), dynamic_ncols=True,  # the whole run's work, estimated
                   bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} elapsed{postfix}")
        bar.set_description_str(f"{done_trials}/{len(plan.trials)} trials")
        cost, expected = {j.key: j.cost for j in work}, expected_epochs(plan)
        left = TimeLeft(cost, expected, self.workers)

        def show_left() -> None:
            seconds = left.seconds(time.monotonic())
            bar.set_postfix_str(f"about {'?' if seconds is None else tqdm.format_interval(seconds)} left", False)

        show_left()  # "about ? left" until a job has shown its pace

        def started(job: Job, threads: int) -> None:
            left.start(job.key, time.monotonic())
            if job.key.study:
                bar.write(f"tuning {job.name.removeprefix('the ')} ({threads} thread{'s' * (threads > 1)})")

        moved: dict[Any, float] = {}

        def epoch(key: Any, n: int) -> None:  # a running job's share, never all of it before it ends
            left.epoch(key, n, time.monotonic())
            show_left()
            share = cost[key] * min(0.9, left.ended[key] / max(1.0, expected.get(key, 1.0)))
            bar.update(max(0.0, min(share - moved.get(key, 0.0), bar.total - bar.n)))
            moved[key] = max(share, moved.get(key, 0.0))

        try:
            for job, result in executor.execute(work, [data for _, data in plan.specs], started, epoch):
                left.done(job.key, time.monotonic())
                show_left()
                if job.key.study:
                    self._study_done(job, result, bar)
                else:
                    for rec in result["records"]:
                        per_user = rec.pop("per_user", None)
                        if per_user is not None:  # first: a record without its per-user file is not done
                            self.store.write_per_user(rec, per_user)
                            faults.point("per-user")
                        self.store.append(rec)  # the driver is the store's only writer
                        results.append(rec)
                        done_trials += 1
                        bar.write(one_line(rec))
                        faults.point("stored")
                    bar.set_description_str(f"{done_trials}/{len(plan.trials)} trials")
                bar.update(max(0.0, min(job.cost - moved.get(job.key, 0.0), bar.total - bar.n)))
        finally:
            bar.close()
        return results

    def _study_done(self, job: Job, result: dict[str, Any], bar: Any) -> None:
        info = result["info"]
        self.tuning["studies"][result["study"]] = info
        states = ", ".join(f"{v} {k}" for k, v in info["states"].items())
        bar.write(f"tuned {job.name.removeprefix('the ')}: best validation {info['metric']} "
                  f"{info['best_validation']:.5f} after {info['trials']} trials ({states}), "
                  f"{info['stack']} at a time, {info['seconds_this_call']:.0f} s")

    def stacking_note(self) -> dict[str, str]:
        """Per data set, how its seeds were trained (written to the manifest)."""
        groups = self.plan.groups if self.plan else {}
        if not self.opts.stack:
            return {label: "one seed at a time (--no-stack)" for label in groups}
        return {label: (f"seeds in stacked groups of {sorted(set(sizes), reverse=True)} per variant and device "
                        "(ncf_core.engine.train.fit_stacked: same batches, negatives and selection per seed as alone; "
                        "samples/s per trial are per seed, over the shared wall clock)")
                for label, sizes in groups.items()}

    def describe(self, plan: Plan, seconds: dict[tuple, float], wall: float,
                 span: dict[tuple, tuple[float, float]] | None = None, bounds: dict[str, float] | None = None) -> str:
        return describe_plan(plan, seconds, wall, self.workers, self.threads, span, bounds)

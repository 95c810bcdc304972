"""A run's time left, for its progress bar: each job at its own pace once it has ended an epoch.

The bar's units are the plan's rough costs (examples times a constant per model), which misjudge a
tuned winner in the costly corner of its space by 1.5x or more; tqdm's rate over those units then
says minutes are left when a quarter of an hour is (seen on ML-1M shapes: "about 2:41 left" with
~10 minutes to go, the last job an MLP wider than the constant assumes). So a running job is
projected from its own seconds per epoch, and a waiting one from the seconds per unit of cost the
finished and running jobs have shown.
"""

from __future__ import annotations

from collections.abc import Hashable


class TimeLeft:
    def __init__(self, cost: dict[Hashable, float], epochs: dict[Hashable, float], workers: int) -> None:
        self.cost, self.epochs, self.workers = cost, epochs, max(1, workers)
        self.started: dict[Hashable, float] = {}
        self.ended: dict[Hashable, int] = {}
        self.took: dict[Hashable, float] = {}

    def start(self, key: Hashable, now: float) -> None:
        self.started[key] = now

    def epoch(self, key: Hashable, n: int) -> None:
        self.ended[key] = self.ended.get(key, 0) + n

    def done(self, key: Hashable, now: float) -> None:
        self.took[key] = now - self.started.get(key, now)

    def seconds(self, now: float) -> float | None:
        """Seconds left, or None before any job has shown its pace. A job can use one worker, so the
        answer is at least the longest running job's own remainder."""
        running = {}
        for key, t0 in self.started.items():
            if key not in self.took and self.ended.get(key):
                elapsed = now - t0
                total = elapsed * max(1.0, self.epochs.get(key, 1.0) / self.ended[key])
                running[key] = (elapsed, total)
        seen_s = sum(self.took.values()) + sum(total for _, total in running.values())
        seen_cost = sum(self.cost[k] for k in self.took) + sum(self.cost[k] for k in running)
        if seen_cost <= 0 or seen_s <= 0:
            return None
        per_cost = seen_s / seen_cost
        own = [max(0.0, total - elapsed) for elapsed, total in running.values()]
        waiting = [self.cost[k] * per_cost for k in self.cost if k not in self.took and k not in running]
        return max(max(own, default=0.0), (sum(own) + sum(waiting)) / self.workers)

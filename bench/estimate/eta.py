"""A run's time left, for its progress bar: each job at its own pace once it has ended an epoch.

The bar's units are the plan's rough costs (examples times a constant per model), which misjudge a
tuned winner in the costly corner of its space by 1.5x or more; tqdm's rate over those units then
says minutes are left when a quarter of an hour is (seen on ML-1M shapes: "about 2:41 left" with
~10 minutes to go, the last job an MLP wider than the constant assumes). So a running job is
projected from its own seconds per epoch, and a waiting one from the seconds per unit of cost the
finished and running jobs have shown. A job's pace is taken from its first reported epoch on: what
comes before (loading, a split, pretrained bases) would make a job's first epoch look like minutes.
"""

from __future__ import annotations

from collections.abc import Hashable


class TimeLeft:
    def __init__(self, cost: dict[Hashable, float], epochs: dict[Hashable, float], workers: int) -> None:
        self.cost, self.epochs, self.workers = cost, epochs, max(1, workers)
        self.started: dict[Hashable, float] = {}
        self.first: dict[Hashable, tuple[float, int]] = {}  # when a job first reported, and its epochs then
        self.ended: dict[Hashable, int] = {}
        self.took: dict[Hashable, float] = {}

    def start(self, key: Hashable, now: float) -> None:
        self.started[key] = now

    def epoch(self, key: Hashable, n: int, now: float) -> None:
        self.ended[key] = self.ended.get(key, 0) + n
        self.first.setdefault(key, (now, self.ended[key]))

    def done(self, key: Hashable, now: float) -> None:
        self.took[key] = now - self.started.get(key, now)

    def seconds(self, now: float) -> float | None:
        """Seconds left, or None before any job has shown its pace. A job can use one worker, so the
        answer is at least the longest running job's own remainder."""
        running = {}  # a running job with a pace: (seconds so far, seconds to go)
        for key, t0 in self.started.items():
            t1, n1 = self.first.get(key, (now, 0))
            n = self.ended.get(key, 0)
            if key not in self.took and n > n1:
                rest = max(0.0, self.epochs.get(key, n) - n) * (now - t1) / (n - n1)
                running[key] = (now - t0, rest)
        seen_s = sum(self.took.values()) + sum(so_far + rest for so_far, rest in running.values())
        seen_cost = sum(self.cost[k] for k in self.took) + sum(self.cost[k] for k in running)
        if seen_cost <= 0 or seen_s <= 0:
            return None
        own = [rest for _, rest in running.values()]
        waiting = [self.cost[k] * seen_s / seen_cost for k in self.cost if k not in self.took and k not in running]
        return max(max(own, default=0.0), (sum(own) + sum(waiting)) / self.workers)

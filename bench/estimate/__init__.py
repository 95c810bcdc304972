"""The cost model, in one place: what a plan's jobs train (``work``), how long that takes on this
machine (``probe``: the ``--plan`` probe and the fitted epoch cost), their wall time on the
workers (``schedule``), and the progress bar's time left (``eta``). Orchestration (``bench.run``)
imports ``work`` and ``schedule``; the probe, which trains models, only when ``--plan`` asks."""

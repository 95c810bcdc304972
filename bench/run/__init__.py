"""Orchestration: plan a run's studies and seeded units as one dependency graph, resume what is
stored, hand the work to an executor (in process, a local pool, Ray), store what comes back."""

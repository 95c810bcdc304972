"""Presentation: stored trials to statistics (which decide) to tables, plots and the manifest (which render)."""

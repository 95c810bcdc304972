"""Optuna studies (filled in by the tuning work)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    pass

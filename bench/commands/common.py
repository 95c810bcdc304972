"""What the commands share: the names a user typed, and the argument types of the parser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

LATEST = "latest"  # --resume without a folder


def csv_names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _at_least(minimum: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, not {value}")
    return value


def positive_int(text: str) -> int:
    return _at_least(1, text)


def nonnegative_int(text: str) -> int:
    return _at_least(0, text)


def prog() -> str:
    """The command as the user typed it."""
    return "ncf-bench" if Path(sys.argv[0]).name == "ncf-bench" else "python -m bench"

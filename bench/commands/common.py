"""What the commands share: the names a user typed, and the argument types of the parser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

LATEST = "latest"  # --resume without a folder


def csv_names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value



def prog() -> str:
    """The command as the user typed it."""
    return "ncf-bench" if Path(sys.argv[0]).name == "ncf-bench" else "python -m bench"

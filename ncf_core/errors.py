"""The one exception type that reaches a user as a one-line message."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data: the message names the file and the problem, on one line."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):  # crosses process boundaries (bench's worker pool) with both fields
        return (type(self), (self.path, self.problem))

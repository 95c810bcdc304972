"""Reading helpers shared by the file loaders: every failure becomes a one-line DataError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ncf_core.errors import DataError


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(path, "file not found")
    return path


def read_table(path: Path, columns: list[str], **kwargs: Any) -> pd.DataFrame:
    """Read a delimited file and check that ``columns`` are present."""
    require_file(path)
    try:
        frame = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise DataError(path, f"cannot parse: {str(e).splitlines()[0] if str(e) else e!r}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing columns {missing}; found {list(frame.columns)}")
    if frame.empty:
        raise DataError(path, "no rows")
    return frame


def numeric(path: Path, frame: pd.DataFrame, column: str, dtype: Any = np.float64) -> np.ndarray:
    """A column as numbers; the first offending value is named in the error."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"non-numeric {column} {frame[column].iloc[row]!r} at data row {row + 1}")
    return values.to_numpy().astype(dtype)

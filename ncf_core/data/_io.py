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
    """Read a delimited file and check that ``columns`` are present (and, for a file without a
    header read with ``names``, that its lines carry that many fields)."""
    require_file(path)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    for signature, kind in ((b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"BZh", "bzip2"), (b"\xfd7zX", "xz")):
        if magic.startswith(signature):
            raise DataError(path, f"is {kind}-compressed: unpack it first")
    if magic.startswith(b"\xef\xbb\xbf"):  # a byte-order mark: not part of the first field's name or value
        kwargs = {"encoding": "utf-8-sig", **kwargs}
    try:
        frame = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise DataError(path, f"cannot parse: {str(e).splitlines()[0] if str(e) else e!r}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing columns {missing}; found {list(frame.columns)}")
    if frame.empty:
        raise DataError(path, "no rows")
    names = kwargs.get("names")
    if names is not None and kwargs.get("header", "infer") is None:
        found = int(frame.iloc[0].notna().sum())
        if found < len(names):
            raise DataError(path, f"expected {len(names)} fields per line, found {found} on line 1")
    return frame


def numeric(path: Path, frame: pd.DataFrame, column: str, dtype: Any = np.float64) -> np.ndarray:
    """A column as numbers; the first offending value is named in the error. Integer columns
    (ids, timestamps) must hold whole numbers within int64: 1.5 is not silently user 1, and
    2^64 or inf do not collapse onto one id."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"non-numeric {column} {_show(raw.iloc[row])} at data row {row + 1}")
    if np.issubdtype(np.dtype(dtype), np.integer):
        if values.dtype.kind == "u" and (values.to_numpy() > np.iinfo(np.int64).max).any():
            bad = values.to_numpy() > np.iinfo(np.int64).max
        else:
            as_float = values.to_numpy(dtype=np.float64)
            bad = ~np.isfinite(as_float) | (np.abs(as_float) >= 2.0**63)
            if values.dtype.kind == "f":
                bad |= np.floor(as_float) != as_float
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(path, f"{column} {_show(raw.iloc[row])} at data row {row + 1} is not an integer id "
                                  "within int64")
        return values.to_numpy().astype(dtype)
    values = values.to_numpy().astype(dtype)
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(path, f"{column} {_show(raw.iloc[row])} at data row {row + 1} is not finite")
    return values


def _show(value: Any) -> str:
    """A value as the file has it: ``1.5``, ``'abc'``, ``nan`` (never ``np.float64(nan)``)."""
    if isinstance(value, str):
        return repr(value)
    return str(value.item() if hasattr(value, "item") else value)

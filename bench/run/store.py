"""The trial store: an append-only JSON-lines file, one complete record per line, and beside it one
Parquet file per trial with its metrics per test user (``per_user/``, for tests paired over users).

Each record is written with one ``write`` and ``fsync``ed before the next trial starts, so a
crash (even SIGKILL) loses at most the trial in progress. A trial's per-user file is written
(temporary name, ``fsync``, rename) before its record, and a trial counts as done only with both:
a record whose file is missing runs again. A torn last line is ignored on read and cut before the
next run appends (``repair``). The latest record of a key wins, so a retried failure replaces the
failure.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import layout
from ncf_core import DataError
from ncf_core.tasks import TASKS

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

KEY_FIELDS = ("dataset", "task", "variant", "device", "seed")  # what identifies a trial in the store


def trial_key(rec: dict[str, Any]) -> tuple:
    return tuple(rec[f] for f in KEY_FIELDS)


def well_formed(rec: Any) -> bool:
    """A record this harness could have written: its key fields of the right types, a task it knows,
    and an "ok" trial with every metric of its task, each a finite number (a hand-edited or foreign
    line is skipped and reported, and its trial runs again: it is not trusted)."""
    if not isinstance(rec, dict):
        return False
    if not all(isinstance(rec.get(f), str) for f in ("dataset", "task", "variant", "device", "status")):
        return False
    if not isinstance(rec.get("seed"), int) or isinstance(rec.get("seed"), bool):
        return False
    task = TASKS.get(rec["task"])
    if task is None:
        return False
    metrics = rec.get("metrics")
    if rec["status"] != "ok":
        return True
    if not isinstance(metrics, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in metrics.values()):
        return False  # NaN, a string, a list: not a value this harness stores for a finished trial
    return all(any(_named(template, name) for name in metrics) for template in task.metrics)


def _named(template: str, name: str) -> bool:
    """``name`` is ``template``'s metric at some cut-off (``full_ndcg@{k}`` names ``full_ndcg@10``)."""
    if "{k}" not in template:
        return name == template
    head = template.removesuffix("{k}")
    return name.startswith(head) and name[len(head):].isdigit()



class FolderBusy(DataError):
    """Another process holds the run folder's lock."""

class TrialStore:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / layout.TRIALS
        self.checkpoints = self.run_dir / layout.CHECKPOINTS
        self.skipped: list[int] = []  # line numbers of the last read that held no record

    def records(self) -> list[dict[str, Any]]:
        """Latest record per trial key, in first-seen order. Lines that hold no record (a torn
        line, a null, bytes that are not UTF-8, an edit) are skipped and their numbers kept in
        ``skipped`` for the caller to report."""
        self.skipped = []
        if not self.path.is_file():
            return []
        latest: dict[tuple, dict[str, Any]] = {}
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    record = None
                if not well_formed(record):
                    self.skipped.append(number)
                    continue
                latest[trial_key(record)] = record
        return list(latest.values())

    def finished(self) -> set[tuple]:
        return self.done(self.records())

    def done(self, records: Any) -> set[tuple]:
        """Keys of the trials that need not run again: "ok", with their per-user values stored."""
        return {trial_key(r) for r in records if r.get("status") == "ok" and self.per_user_path(r).is_file()}

    def per_user_path(self, record: dict[str, Any]) -> Path:
        return self.run_dir / layout.PER_USER / layout.per_user_name(trial_key(record))

    def write_per_user(self, record: dict[str, Any], values: dict[str, Any]) -> None:
        """The trial's per-user values as one Parquet file, whole or absent: the key columns, ``user``,
        and one column per metric, named as in trials.csv."""
        import pandas as pd

        path = self.per_user_path(record)
        frame = pd.DataFrame({**{k: record[k] for k in KEY_FIELDS}, **values})  # values: "user" first
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(tmp, index=False)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as err:
            raise DataError(path, f"cannot store a trial's per-user values ({err.strerror})") from None

    def per_user(self, records: list[dict[str, Any]]) -> Any:
        """The stored per-user values of these trials (those with a file), as one frame."""
        import pandas as pd

        parts = [pd.read_parquet(self.per_user_path(r)) for r in records
                 if r.get("status") == "ok" and self.per_user_path(r).is_file()]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*KEY_FIELDS, "user"])

    def repair(self) -> int:
        """Cut a torn last line (a crash mid-write), so the next record starts on a line of its own;
        returns the bytes dropped. Its trial was never finished, so it simply runs again."""
        if not self.path.is_file():
            return 0
        try:
            return self._repair()
        except OSError as err:
            raise DataError(self.path, f"cannot repair the trial store ({err.strerror})") from None

    def _repair(self) -> int:
        with open(self.path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return 0
            keep, block = 0, 1 << 16
            for end in range(size, 0, -block):  # the last newline, read backwards in blocks
                start = max(0, end - block)
                handle.seek(start)
                at = handle.read(end - start).rfind(b"\n")
                if at >= 0:
                    keep = start + at + 1
                    break
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
        return size - keep

    def append(self, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, default=_jsonable) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            raise DataError(self.path, f"cannot store a trial ({err.strerror})") from None

    def check_folder(self) -> None:
        """Refuse a folder this harness did not make (``layout.not_a_run_folder``)."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise DataError(self.run_dir, "is a file, not a run folder")
        try:
            names = {p.name for p in self.run_dir.iterdir()} if self.run_dir.exists() else set()
        except OSError as err:
            raise DataError(self.run_dir, f"cannot read the run folder ({err.strerror})") from None
        problem = layout.not_a_run_folder(names)
        if problem:
            raise DataError(self.run_dir, problem)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run folder for one ``bench run``; a second one on it is refused, not interleaved."""
        self.check_folder()
        created = not self.run_dir.exists()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.run_dir / layout.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DataError(self.run_dir, f"cannot write the run folder ({err.strerror})") from None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise FolderBusy(self.run_dir, "another bench run is using this folder") from None
            yield
        finally:
            os.close(fd)  # closing releases the lock
            if created and [p.name for p in self.run_dir.iterdir()] == [layout.LOCK]:
                (self.run_dir / layout.LOCK).unlink()  # stopped before writing anything: leave nothing behind
                self.run_dir.rmdir()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def stored_suite(run_dir: Path) -> str | None:
    """The suite the folder's earlier calls ran, as its manifest says (None: no readable manifest)."""
    try:
        data = json.loads((Path(run_dir) / layout.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    suite = data.get("suite") if isinstance(data, dict) else None
    return suite.get("name") if isinstance(suite, dict) else suite if isinstance(suite, str) else None

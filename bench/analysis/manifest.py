"""manifest.json: what ran, where, with which versions — written next to the trials."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

from bench import layout
from ncf_core import DataError


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    import numpy
    import pandas
    import scipy

    devices = {"cpu": _cpu_name()}
    if torch.cuda.is_available():
        devices["cuda"] = torch.cuda.get_device_name(0)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {"torch": torch.__version__, "numpy": numpy.__version__, "pandas": pandas.__version__,
                     "scipy": scipy.__version__, "optuna": _version("optuna"), "numba": _version("numba")},
        "devices": devices,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
    }


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# Lists a resumed run's calls add to: its report covers every call, so its manifest does too.
UNIONS = ("seeds", "variants", "datasets", "devices")


def write_manifest(run_dir: Path, runs_entry: dict[str, Any] | None = None, **fields: Any) -> Path:
    """Merge ``fields`` into the run's manifest. ``environment`` describes the machine of the latest
    call; every call appends its own entry (with its machine) to ``runs``, so a run resumed on
    another machine says so. A damaged manifest is set aside as ``manifest.json.damaged``."""
    path = Path(run_dir) / layout.MANIFEST
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            os.replace(path, path.with_name(f"{layout.MANIFEST}.damaged"))
            data = {}
    for key, value in fields.items():  # what a call adds to a list the earlier calls wrote: the union
        value = _plain(value)
        if key in UNIONS and isinstance(data.get(key), list) and isinstance(value, list):
            value = list(dict.fromkeys([*(x for x in data[key] if isinstance(x, (str, int))), *value]))
        data[key] = value
    env = environment()
    data["environment"] = env
    if not isinstance(data.get("runs"), list):
        data["runs"] = []
    if runs_entry is not None:
        data["runs"].append({**_plain(runs_entry), "devices": env["devices"],
                                            "platform": env["platform"], "git_commit": env["git_commit"]})
    data["updated"] = iso(time.time())
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a folder that took no new files: the old manifest stays whole
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DataError(path, f"cannot write the manifest ({err.strerror or err})") from None
    return path


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def record_run(run_dir: Path, runner: Any, *, suite: Any, options: Any, started: float, trials_run: int) -> Path:
    """What one ``bench run`` call did, in the manifest beside its trials: the seeds, variants, data
    sets and devices of every call so far (a resumed run's report covers them all), and in ``runs``
    each call's own options, seeds and variants (``options`` at the top: the latest call's)."""
    stand_ins = {spec.stands_in_for: spec.label for spec, _ in getattr(runner, "specs", []) if spec.stands_in_for}
    opts = {k: v for k, v in _plain(options).items() if k != "params"}
    opts["params"] = options.params.as_json() if options.params else []
    fields: dict[str, Any] = {"suite": suite, "options": opts, "seeds": runner.seeds, "devices": runner.devices,
                              "variants": runner.variants, "stand_ins": stand_ins,
                              "datasets": [spec.label for spec, _ in getattr(runner, "specs", [])]}
    anomalies = {spec.label: list(spec.anomalies) for spec, _ in getattr(runner, "specs", []) if spec.anomalies}
    if anomalies:
        fields["file_anomalies"] = anomalies
    if getattr(runner, "tuning", None):
        fields["tuning"] = runner.tuning
    stacking = runner.stacking_note()
    if stacking:
        fields["seed_stacking"] = stacking
    entry = {"started": iso(started), "seconds": round(time.time() - started, 1), "trials_run": trials_run,
             "jobs": getattr(runner, "workers", 1), "threads_per_job": getattr(runner, "threads", None),
             "options": opts, "seeds": runner.seeds, "variants": runner.variants}  # this call's own
    return write_manifest(run_dir, runs_entry=entry, **fields)

"""The architecture, checked: data flows one way, no module imports back up, no file outgrows its
place, and tasks own their behaviour."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("ncf_core", "bench")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules ``path`` imports, at any depth of the file (imports inside functions count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def test_the_import_graph_has_no_circle():
    modules = _modules()
    graph = {name: _imports(path, name, set(modules)) for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("import circle: " + " -> ".join(trail[trail.index(node):] + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph[node]:
            if not nxt.startswith(node + ".") and not node.startswith(nxt + "."):  # a package and its parts
                visit(nxt, trail + [node])
        state[node] = 2

    for name in graph:
        visit(name, [])


def test_the_library_knows_nothing_of_the_harness():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("ncf_core"):
            text = path.read_text()
            for banned in ("import bench", "from bench", "import optuna", "from optuna", "import pytest"):
                assert banned not in text, f"{path}: {banned}"


def test_files_keep_to_their_size_and_executors_to_moving_work():
    for path in [*(ROOT / "bench").rglob("*.py"), *(ROOT / "ncf_core").rglob("*.py")]:
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path}: {lines} lines"
    assert len((ROOT / "bench" / "run" / "runner.py").read_text().splitlines()) <= 300
    executors = (ROOT / "bench" / "run" / "executors.py").read_text()
    assert "runner" not in executors and "Runner" not in executors


def test_no_module_branches_on_a_task_name():
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "tasks.py":
                assert "task ==" not in path.read_text(), path


def test_the_test_folders_mirror_the_code():
    """A test of ``bench/run/`` lives in ``tests/bench/run/``: a moved or renamed package leaves its
    tests' folder behind, and this names it."""
    folders = {p.parent for package in PACKAGES for p in (ROOT / "tests" / package).rglob("test_*.py")}
    assert folders, "no package tests found"
    stray = [str(f.relative_to(ROOT)) for f in folders if not (ROOT / f.relative_to(ROOT / "tests")).is_dir()]
    assert not stray, f"test folders without the package they mirror: {stray}"


def test_a_variants_settings_are_resolved_where_jobs_are_built_and_nowhere_else():
    """``bench.configs.resolve`` is the one way from a variant and --params to configs: the runner
    resolves a run's variants once (the plan falls back to it for a plan made without a runner), a
    study its base once and its winner once, a tuned unit the winner its study sent. A new caller
    re-derives configs a job already carries."""
    callers = {}
    pattern = re.compile(r"(?<![.\w])(resolve|resolved_settings)\(")  # not Path.resolve()
    for path in (ROOT / "bench").rglob("*.py"):
        for line in path.read_text().splitlines():
            if pattern.search(line) and not line.lstrip().startswith("def "):
                callers[path.relative_to(ROOT).as_posix()] = callers.get(path.relative_to(ROOT).as_posix(), 0) + 1
    callers.pop("bench/__main__.py", None)  # the lazy command import, another resolve
    assert callers == {"bench/configs.py": 2, "bench/run/runner.py": 1, "bench/run/plan.py": 1,
                       "bench/compute/study.py": 2, "bench/compute/units.py": 1}, callers
    private = ("variant_configs(", "trial_config(", "base_configs(", "reference_settings(")
    outside = [p.name for p in (ROOT / "bench").rglob("*.py") if p.name != "configs.py"
               and any(name in p.read_text().replace(f"_{name}", "") for name in private)]
    assert not outside, outside

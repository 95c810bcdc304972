"""Every import of the project's own modules resolves, the lazy ones inside functions included: a
moved or renamed module fails here, not in the one command that imports it late."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.conftest import ROOT

OWN = ("bench", "ncf_core")
FILES = sorted(p for package in OWN for p in (ROOT / package).rglob("*.py")) + sorted((ROOT / "tests").rglob("*.py"))


def _own_imports(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names) of each import of a bench or ncf_core module, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, ()) for a in node.names if a.name.split(".")[0] in OWN]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in OWN:
            out.append((node.lineno, node.module, tuple(a.name for a in node.names)))
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_own_import_resolves(path):
    broken = []
    for line, module, names in _own_imports(path):
        try:
            imported = importlib.import_module(module)
        except ImportError as err:
            broken.append(f"{path.name}:{line}: {module} ({err})")
            continue
        for name in names:
            if not hasattr(imported, name):
                try:
                    importlib.import_module(f"{module}.{name}")
                except ImportError:
                    broken.append(f"{path.name}:{line}: {module} has no {name}")
    assert not broken, broken


def test_the_check_sees_a_lazy_import(tmp_path):
    """The test above would pass vacuously if it missed imports inside functions."""
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from bench.nowhere import x\n    import ncf_core.gone\n")
    assert _own_imports(sample) == [(2, "bench.nowhere", ("x",)), (3, "ncf_core.gone", ())]


def test_every_command_the_parser_offers_resolves_to_its_function():
    """The parser names each command's module as a string (so --help imports no torch): a moved
    command module fails here."""
    import argparse

    from bench.__main__ import build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == {"run", "report", "list", "tune", "speed", "data", "benchtable"}
    for name, parser in sub.choices.items():
        assert callable(parser.get_default("func").resolve()), name

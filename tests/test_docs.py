"""The front door stays a front door, and no relative link in it or in docs/ is dead."""

from __future__ import annotations

import re

from tests.conftest import ROOT

LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_readme_is_short_and_every_relative_link_resolves():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    dead = [f"{page.name}: {target}" for page in pages for target, _ in LINK.findall(page.read_text())
            if "://" not in target and not (page.parent / target).exists()]
    assert not dead, dead


def _commands() -> list[tuple[str, str]]:
    """Every `python -m bench ...` line of the README's and docs' code blocks, comments cut."""
    out = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", page.read_text(), re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():  # continued lines joined
                line = line.split(" # ")[0].strip()
                if line.startswith("python -m bench "):
                    out.append((page.name, line[len("python -m bench "):]))
    return out


def test_every_bench_command_the_docs_show_is_one_the_parser_accepts():
    """A renamed flag or command fails here, not in a newcomer's terminal."""
    import shlex

    import pytest

    from bench.__main__ import build_parser

    commands = _commands()
    assert len(commands) >= 10
    refused = []
    for page, line in commands:
        try:
            build_parser().parse_args(shlex.split(re.sub(r"\$\w+", "1", line)))  # a shell variable: a number
        except SystemExit:
            refused.append(f"{page}: {line}")
        except ValueError as err:  # unbalanced quotes
            pytest.fail(f"{page}: {line}: {err}")
    assert not refused, refused


def test_readme_ci_and_tox_install_the_same_cpu_torch():
    """The pin a newcomer types, the one CI installs and the one tox installs are one version, inside
    pyproject's range, and tox takes it from PyTorch's CPU index unless told otherwise (a bare torch
    can pull a multi-GB CUDA build). Checked by hand with `tox -e lint,py` on 2026-12-07: torch
    2.13.0+cpu in the tox environment."""
    import configparser

    from packaging.specifiers import SpecifierSet

    pins = {name: set(re.findall(r"torch==([\d.]+)", (ROOT / name).read_text()))
            for name in ("README.md", ".ci/run", "tox.ini")}
    assert all(len(found) == 1 for found in pins.values()) and len(set.union(*pins.values())) == 1, pins
    [version] = pins["README.md"]
    [spec] = re.findall(r'"torch([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert version in SpecifierSet(spec.split("#")[0].strip())
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    assert tox["testenv"]["deps"].strip() == f"torch=={version}"
    assert "download.pytorch.org/whl/cpu" in tox["testenv"]["set_env"]

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

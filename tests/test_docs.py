"""The front door stays a front door, and no relative link in it or in docs/ is dead."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_readme_is_short_and_every_relative_link_resolves():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    dead = [f"{page.name}: {target}" for page in pages for target, _ in LINK.findall(page.read_text())
            if "://" not in target and not (page.parent / target).exists()]
    assert not dead, dead

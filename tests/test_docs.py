"""The front door stays a front door, and no relative link in it or in docs/ is dead."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_readme_is_short_and_every_relative_link_resolves():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    dead = [f"{page.name}: {target}" for page in pages for target, _ in LINK.findall(page.read_text())
            if "://" not in target and not (page.parent / target).exists()]
    assert not dead, dead


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(page: Path | None = None) -> list[tuple[str, str]]:
    """Every `python -m bench ...` command of the README's and docs' code blocks (or one page's), in
    the order shown, comments cut."""
    out = []
    for path in [page] if page else PAGES:
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", path.read_text(), re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():  # continued lines joined
                found = re.search(r"(?:^|&& )python -m bench (.*)", line.split(" # ")[0].strip())
                if found:
                    out.append((path.name, found.group(1)))
    return out


def test_every_bench_command_the_docs_show_is_one_the_parser_accepts():
    """A renamed flag or command fails here, not in a newcomer's terminal."""
    import shlex

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


# --- every shown command, run ---------------------------------------------------------------------

SMALLER = {"--tune": "2", "--trials": "2", "--workers": "2"}  # the shown value -> a test's
APPENDED = {"run": ["--seeds", "1", "--epochs", "1"], "tune": ["--epochs", "1"],
            "speed": ["--devices", "cpu", "--models", "gmf", "--batch-sizes", "256", "--modes", "single"]}
# where a run names no variants: one of each kind (MF's closed-form step, a pretrained NeuMF and the
# GMF and MLP it starts from, a reference baseline); the smoke suite's tests run them all
VARIANTS = ["--variants", "mf,neumf-pre-sgd,ease"]


def _anime(folder: Path) -> None:
    """Kaggle's two anime files, small: 40 anime, 50 users with 12 ratings each (some -1)."""
    import numpy as np

    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    genres = ["Action", "Comedy", "Drama", "Romance", "Sci-Fi"]
    (folder / "anime.csv").write_text("anime_id,name,genre,type,episodes,rating,members\n" + "".join(
        f'{a},Anime {a},"{genres[a % 5]}, {genres[(a + 2) % 5]}",{("TV", "Movie", "OVA")[a % 3]},{1 + a % 26},7.5,100\n'
        for a in range(1, 41)))
    (folder / "rating.csv").write_text("user_id,anime_id,rating\n" + "".join(
        f"{u},{a},{rng.choice([-1, *range(1, 11)])}\n" for u in range(1, 51)
        for a in rng.choice(np.arange(1, 41), 12, replace=False)))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every public set the docs name, in miniature, served on loopback as ncf_core's source table
    describes it (archives checked against their SHA-256, the NCF files unverified as on GitHub)."""
    import hashlib

    from ncf_core.data import fetch as fetch_mod
    from ncf_core.data.fetch import Remote, Source
    from tests.conftest import FileServer, ml1m_like, movielens_zip

    files = {f"{name}.zip": movielens_zip(name) for name in ("ml-100k", "ml-1m", "ml-20m", "ml-25m")}
    ncf = tmp_path_factory.mktemp("ncf")
    for stem in ("ml-1m", "pinterest-20"):
        ml1m_like(ncf, stem)
    files |= {p.name: p.read_bytes() for p in ncf.iterdir()}
    server = FileServer(files)
    sources = {}
    for name, source in fetch_mod.SOURCES.items():
        remotes = tuple(Remote(f"{server.url}/{r.url.rsplit('/', 1)[1]}",
                               r.digest and "sha256:" + hashlib.sha256(files[r.url.rsplit("/", 1)[1]]).hexdigest(),
                               unpack=r.unpack, target=r.target) for r in source.files)
        sources[name] = Source(name, remotes, note=source.note)
    yield sources
    server.close()


def _argv(line: str, places: dict[str, str]) -> list[str]:
    """The shown line as the shell would pass it, with its placeholders filled in and its sizes cut
    to a test's: ``APPENDED`` flags come last, so they override the suite's (argparse: last wins)."""
    import glob
    import shlex

    for name, value in places.items():
        line = re.sub(rf"(?<![\w./-]){re.escape(name)}(?![\w-])", value, line)
    argv = []
    for token in shlex.split(line):
        argv += sorted(glob.glob(token)) or [token] if "*" in token else [token]
    argv = [SMALLER.get(prev, token) if prev in SMALLER else token for prev, token in zip(["", *argv], argv)]
    return argv + APPENDED.get(argv[0], []) + (VARIANTS if argv[0] == "run" and "--variants" not in argv else [])


@pytest.fixture()
def ray_head():
    """A Ray head in a private temporary folder for one test, with token authentication (Ray's default
    from 2.59) and a token made here; yields the environment a driver connects with (``RAY_ADDRESS``,
    where ``--ray auto`` looks first). Stopped afterwards: only its own processes."""
    import os
    import signal
    import tempfile
    import time

    from tests.conftest import free_port, stop_processes_naming

    pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    temp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex()}
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", f"--temp-dir={temp}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (temp / "ray_current_cluster").exists() and head.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert head.poll() is None and (temp / "ray_current_cluster").exists(), "the Ray head did not start"
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        stop_processes_naming(temp)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if _commands(p)], ids=lambda p: p.name)
def test_every_command_a_page_shows_runs(page, served, request, tmp_path, monkeypatch, capsys):
    """Each page's commands, in the order shown, from a fresh folder, through ``main``: its data
    folder (``../shared/data``, ``DATA``) holds Kaggle's anime files as a user puts them there, and
    every public set is fetched by the shown commands from a loopback mirror; PostgreSQL and a Ray
    head are real servers on loopback (the Ray line's driver is a ``python -m bench`` process of its
    own, the sets fetched for it first). Only sizes shrink (seeds, epochs, trials, workers, the speed
    grid, the variants a run names none of: ``SMALLER``, ``APPENDED``, ``VARIANTS``); a renamed flag,
    a moved module or a command the docs describe wrongly fails here."""
    from bench.__main__ import main
    from ncf_core.data import fetch as fetch_mod

    commands = [line for _, line in _commands(page) if line != "run --suite smoke"]  # .ci/run runs it as shown
    data = tmp_path / "data"
    _anime(data / "anime")
    monkeypatch.setattr(fetch_mod, "SOURCES", served)
    monkeypatch.chdir(tmp_path)
    places = {"../shared/data": str(data), "DATA": str(data), "path/to/ml-1m": str(data / "ml-1m"),
              "path/to/ncf/ml-1m": str(data / "ncf" / "ml-1m"), "/tmp/interim": str(tmp_path / "interim"),
              "$WORKER_ID": "1"}
    if any("postgresql://" in line for line in commands):
        places["postgresql://user:pass@dbhost/optuna"] = request.getfixturevalue("postgres_url")
    ray_env = None
    if any("--ray auto" in line for line in commands):
        ray_env = request.getfixturevalue("ray_head")
        assert main(["data", "fetch", *served, "--data-dir", str(data)]) == 0  # its driver runs apart: fetch here
    for line in commands:
        argv = _argv(line, places)
        if "--ray" in argv:  # a driver process of its own: Ray keeps per-process state an earlier Ray test leaves
            done = subprocess.run([sys.executable, "-m", "bench", *argv], env=ray_env, capture_output=True, text=True,
                                  timeout=600)
            code, err = done.returncode, done.stderr
        else:
            code, err = main(argv), capsys.readouterr().err
        assert code == 0, f"{page.name}: python -m bench {line}\n -> {argv}: exit {code}\n{err[-2000:]}"

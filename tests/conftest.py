"""Shared fixtures: a tiny synthetic data set, and the real data folder when present."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from ncf_core.data import split_for_seed, synthetic

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("NCF_DATA_DIR", ROOT.parent / "shared" / "data"))

requires_data = pytest.mark.skipif(
    not (DATA_DIR / "anime" / "rating.csv").is_file() or not (DATA_DIR / "ml-100k" / "u.data").is_file(),
    reason=f"real data not found under {DATA_DIR}",
)
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=requires_cuda)])
def device(request) -> str:
    """A test taking ``device`` runs on the CPU, and on CUDA where a GPU is present (as implicit's
    tests run one mixin on both): the CUDA path is the CPU test, not a rewrite of it."""
    return request.param


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    torch.set_num_threads(2)


FAST = ["run", "--suite", "smoke", "--variants", "mf", "--seeds", "2", "--epochs", "1"]  # a run in seconds


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory) -> Path:
    """One small finished run folder for the tests that damage, lock or resume a copy of it."""
    from bench.__main__ import main

    out = tmp_path_factory.mktemp("fast") / "run"
    assert main([*FAST, "--out", str(out)]) == 0
    return out


TINY = ["--suite", "smoke", "--epochs", "2"]  # every variant of the smoke suite, briefly


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke suite run once, for the tests that read its files (one that changes a file puts it back)."""
    from bench.__main__ import main

    out = tmp_path_factory.mktemp("smoke") / "run"
    assert main(["run", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_rating():
    return split_for_seed(synthetic.generate(120, 60, 15, seed=3, task="rating"), "rating", 0)


@pytest.fixture(scope="session")
def tiny_ranking():
    return split_for_seed(synthetic.generate(120, 80, 15, seed=3, task="ranking"), "ranking", 0,
                          n_eval_negatives=20)


def ml1m_like(folder: Path, stem: str, n_users: int = 40, n_items: int = 30, seed: int = 0) -> Path:
    """An NCF-format split with the published ML-1M file's quirks in it: line 13 lists its test item
    among its negatives; line 5 repeats a negative."""
    rng = np.random.default_rng(seed)
    train, test, negatives = [], [], []
    for u in range(n_users):
        items = rng.choice(n_items, 9, replace=False)
        train += [f"{u}\t{i}\t1\t{t}" for t, i in enumerate(items[:8])]
        test.append(f"{u}\t{items[8]}\t1\t9")
        negs = [int(x) for x in rng.choice(np.setdiff1d(np.arange(n_items), items), 12, replace=False)]
        if u == 12:
            negs[3] = int(items[8])
        if u == 4:
            negs[5] = negs[2]
        negatives.append(f"({u},{items[8]})\t" + "\t".join(map(str, negs)))
    folder.mkdir(parents=True, exist_ok=True)
    for part, lines in (("train.rating", train), ("test.rating", test), ("test.negative", negatives)):
        (folder / f"{stem}.{part}").write_text("\n".join(lines) + "\n")
    return folder / stem


def stale_trial_failed(study_name: str, url: str):
    """The one trial a SIGKILLed ``bench tune`` worker left RUNNING, failed by Optuna's own check once
    its heartbeat is stale (1 s heartbeat and grace); returns it as it was while running."""
    import optuna

    from bench.compute.storage import quiet, storage_for

    study = optuna.load_study(study_name=study_name, storage=storage_for(url, 1, 1))
    [running] = study.trials
    assert running.state == optuna.trial.TrialState.RUNNING
    while study.trials[0].state == optuna.trial.TrialState.RUNNING:  # until its heartbeat is stale
        with quiet():  # fail_stale_trials is marked experimental
            optuna.storages.fail_stale_trials(study)
    return running


def movielens_zip(name: str) -> bytes:
    """A MovieLens archive in the layout GroupLens ships ``name`` in (``ml-100k/u.data``,
    ``ml-1m/ratings.dat``, else ``<name>/ratings.csv``): 60 users x 20 of 150 movies."""
    import io
    import zipfile

    rng = np.random.default_rng(len(name))
    rows = [(u, int(i), int(rng.integers(1, 6)), t) for u in range(1, 61)
            for t, i in enumerate(rng.choice(np.arange(1, 151), 20, replace=False))]
    member, text = {
        "ml-100k": ("u.data", "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)),
        "ml-1m": ("ratings.dat", "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows)),
    }.get(name, ("ratings.csv", "userId,movieId,rating,timestamp\n"
                 + "".join(f"{u},{i},{r}.0,{t}\n" for u, i, r, t in rows)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{name}/{member}", text)
    return buffer.getvalue()


class FileServer:
    """Serves ``files`` (file name -> bytes) on loopback under ``url``, with HTTP range requests;
    ``cut`` drops the next response after that many bytes (a connection lost mid-file)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.cut, self.ranges = files, None, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                body = outer.files.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                header = self.headers.get("Range")
                outer.ranges.append(header)
                if header:
                    start = int(header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if outer.cut is not None:
                    payload, outer.cut = payload[:outer.cut], None
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server started on loopback for the session (as root it runs as the ``postgres``
    system user: it refuses root); skipped, with the reason, where the binaries or the driver are missing."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    pytest.importorskip("psycopg", reason="no PostgreSQL driver: pip install -e '.[postgres]'")
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode:
        pytest.skip("running as root and there is no postgres system user to run the server")
    base = Path(tempfile.mkdtemp(prefix="ncf-pg-"))  # not under pytest's root-only folder: the server must reach it
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(_as_server_user([initdb, "-D", str(data), "-U", "bench", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    port = free_port()
    log = base / "server.log"
    subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-o",
                                    f"-h 127.0.0.1 -p {port} -k {sock}", "start"]), check=True, capture_output=True)
    try:
        url = f"postgresql://bench@127.0.0.1:{port}/postgres"
        yield url
    finally:
        subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def stop_processes_naming(folder: Path) -> None:
    """SIGKILL the processes whose command line or environment names ``folder``: a private Ray left
    behind (its agents rename themselves, ``ray::DashboardAgent``, but keep ``RAY_TMPDIR``), and never
    a Ray someone else runs on this machine."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if any(str(folder).encode() in (proc / part).read_bytes() for part in ("cmdline", "environ")):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue

"""bench data fetch against archives served by a loopback HTTP server started here (no internet)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from bench.__main__ import main
from ncf_core import DataError
from ncf_core.data import fetch as fetch_mod
from ncf_core.data.fetch import Remote, Source, fetch, status
from tests.conftest import FileServer, movielens_zip


@pytest.fixture()
def server():
    srv = FileServer({"ml-100k.zip": movielens_zip("ml-100k")})
    yield srv
    srv.close()


def _source(srv: FileServer, digest: str | None = None) -> Source:
    digest = digest or "sha256:" + hashlib.sha256(srv.files["ml-100k.zip"]).hexdigest()
    return Source("ml-100k", (Remote(f"{srv.url}/ml-100k.zip", digest, unpack=True),))


def test_fresh_download_unpacks_verified_files_that_bench_run_loads(server, tmp_path):
    data = tmp_path / "data"
    stamp = fetch(_source(server), data)
    assert (data / "ml-100k" / "u.data").is_file() and not list((data / ".downloads").iterdir())
    assert stamp["verified"] and status(_source(server), data) == "present, verified"
    assert main(["run", "--suite", "smoke", "--datasets", "ml-100k", "--data-dir", str(data), "--variants", "mf",
                 "--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "run")]) == 0


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    data = tmp_path / "data"
    server.cut = 1000
    with pytest.raises(DataError, match="interrupted at 1,000 of"):
        fetch(_source(server), data)
    assert (data / ".downloads" / "ml-100k.zip.part").stat().st_size == 1000
    assert not (data / "ml-100k").exists()
    fetch(_source(server), data)
    assert server.ranges == [None, "bytes=1000-"]
    assert (data / "ml-100k" / "u.data").is_file()


def test_a_checksum_mismatch_unpacks_nothing(server, tmp_path, capsys):
    data = tmp_path / "data"
    with pytest.raises(DataError, match="does not match the published"):
        fetch(_source(server, digest="md5:" + "0" * 32), data)
    assert not (data / "ml-100k").exists() and not (data / ".downloads" / "ml-100k.zip.part").exists()
    # the command line, with the real table (GroupLens' MD5) and the fixture served as a mirror
    assert main(["data", "fetch", "ml-100k", "--data-dir", str(data), "--mirror", server.url]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "md5" in err and "nothing unpacked" in err
    assert not (data / "ml-100k").exists()


def test_an_archive_member_cannot_escape_the_data_directory(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.txt", "x")
    archive = tmp_path / "a.zip"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="outside"):
        fetch_mod._unpack(archive, tmp_path / "data")
    assert not (tmp_path / "evil.txt").exists()


def test_the_source_table_names_what_the_loaders_read():
    from ncf_core.data import DATASETS

    for name, source in fetch_mod.SOURCES.items():
        assert name in DATASETS, name  # every download has a loader
        proof = fetch_mod.marker(source)
        # the marker is a file this source puts there: a plain file's target or inside the unpacked zip
        targets = {r.target for r in source.files if not r.unpack}
        zips = {r.url.rsplit("/", 1)[1].removesuffix(".zip") for r in source.files if r.unpack}
        assert proof in targets or proof.split("/", 1)[0] in zips, (name, proof)
        assert all(r.url.startswith("https://") for r in source.files)
    assert Path(fetch_mod.SOURCES["ncf-ml-1m"].files[2].target).name == "ml-1m.test.negative"


def test_a_suite_fetches_a_missing_public_set_and_runs_its_ranking_task(server, tmp_path, monkeypatch, capsys):
    """`bench run` on a data folder without ml-100k downloads it (verified) and runs it, saying so."""
    import pandas as pd

    monkeypatch.setitem(fetch_mod.SOURCES, "ml-100k", _source(server))  # the fixture's digest for GroupLens'
    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    flags = ["run", "--suite", "quick", "--datasets", "ml-100k", "--data-dir", str(data), "--variants", "mf",
             "--seeds", "1", "--epochs", "1", "--out", str(out)]
    assert main([*flags, "--mirror", "http://127.0.0.1:9/nothing"]) == 2  # no network: one line, the command
    said, err = capsys.readouterr().err.strip().splitlines()
    assert said.startswith("fetching ml-100k") and err.startswith("error: ml-100k: could not be fetched")
    assert err.endswith(f"`python -m bench data fetch ml-100k --data-dir {data}` retries, resuming")
    assert not out.exists() and not (data / "ml-100k").exists()
    assert main([*flags, "--mirror", server.url, "--plan"]) == 2  # a plan downloads nothing
    assert "(--plan downloads nothing)" in capsys.readouterr().err and server.ranges == []
    assert main([*flags, "--mirror", server.url]) == 0
    assert f"fetching ml-100k into {data}" in capsys.readouterr().err
    assert status(_source(server), data) == "present, verified"
    trials = pd.read_csv(out / "report" / "trials.csv")
    assert set(trials["dataset"]) == {"ml-100k"} and set(trials["task"]) == {"ranking"}

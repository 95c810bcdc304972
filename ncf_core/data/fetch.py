"""Data acquisition beside the loaders: a table of sources and one resumable, verified download.

Each source lists its files (URL and published digest). A download goes to ``DIR/.downloads/``
as ``<name>.part``; an interrupted one resumes with an HTTP range request. The digest is checked
before anything is unpacked: a mismatch is an error and the file is removed, nothing unpacked.
Archives are unpacked into the file names the loaders expect (``DIR/ml-1m/ratings.dat``), and a
``.fetched`` stamp records what was verified, for ``bench data list``.

Digests: GroupLens publishes an MD5 beside each MovieLens archive (``ml-1m.zip.md5``); those are the
ones checked here, and ml-100k's ``u.data`` is also checked against its SHA-256. The NCF authors'
GitHub files have no published digest: they are fetched over HTTPS and reported as unverified.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ncf_core.data import DATASETS
from ncf_core.errors import DataError

GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
NCF_GITHUB = "https://raw.githubusercontent.com/hexiangnan/neural_collaborative_filtering/master/Data/"


@dataclass(frozen=True)
class Remote:
    url: str
    digest: str | None  # "md5:<hex>" or "sha256:<hex>"; None where the publisher gives none
    unpack: bool = False  # a zip whose top folder is unpacked into the data directory
    target: str = ""  # for a plain file: its path under the data directory


@dataclass(frozen=True)
class Source:
    name: str
    files: tuple[Remote, ...]
    member_digests: dict[str, str] = field(default_factory=dict)  # unpacked path -> "sha256:<hex>"
    note: str = ""


def _grouplens(name: str, md5: str, **kw: object) -> Source:
    return Source(name, (Remote(f"{GROUPLENS}{name}.zip", f"md5:{md5}", unpack=True),),
                  note="GroupLens; research use, no redistribution: cite Harper & Konstan 2015", **kw)


def _ncf(stem: str) -> Source:
    files = tuple(Remote(f"{NCF_GITHUB}{stem}.{part}", None, target=f"ncf/{stem}.{part}")
                  for part in ("train.rating", "test.rating", "test.negative"))
    return Source(f"ncf-{stem}", files,
                  note="He et al. 2017's own split and test negatives (GitHub, no published checksum)")


SOURCES: dict[str, Source] = {s.name: s for s in (
    _grouplens("ml-100k", "0e33842e24a9c977be4e0107933c0723",
               member_digests={"ml-100k/u.data":
                               "sha256:06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"}),
    _grouplens("ml-1m", "c4d9eecfca2ab87c1945afe126590906"),
    _grouplens("ml-20m", "cd245b17a1ae2cc31bb14903e1204af3"),
    _grouplens("ml-25m", "6b51fb2759a8657d3bfcbfc42b592ada"),
    _ncf("ml-1m"),
    _ncf("pinterest-20"),
)}

def marker(source: Source) -> str:
    """The file proving the set is there, as its loader's registry line says (ncf_core.data.DATASETS)."""
    spec = DATASETS[source.name]
    return f"{spec.folder}/{spec.marker}"


Progress = Callable[[int, int | None], Callable[[int], None]]  # (start, total) -> update(n_bytes)


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_digest(path: Path, expected: str | None) -> str:
    """The file's SHA-256; raises (naming the file) when it does not match ``expected``."""
    sha256 = _digest(path, "sha256")
    if expected is None:
        return sha256
    algorithm, _, want = expected.partition(":")
    got = sha256 if algorithm == "sha256" else _digest(path, algorithm)
    if got != want.lower():
        raise DataError(path, f"{algorithm} {got} does not match the published {want}: the download is damaged "
                              "or not the expected file; removed, nothing unpacked")
    return sha256


def download(url: str, part: Path, progress: Progress | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``part``, resuming what an earlier, interrupted call left there."""
    part.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - the URL is from SOURCES
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left to fetch: the part is complete
            return part
        raise DataError(url, f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise DataError(url, f"cannot download: {getattr(err, 'reason', err)}") from None
    with response:
        resumed = start and response.status == 206
        if start and not resumed:
            start = 0  # the server ignored the range: start again
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        update = progress(start, total) if progress else (lambda n: None)
        with open(part, "ab" if resumed else "wb") as handle:
            try:
                for block in iter(lambda: response.read(1 << 16), b""):
                    handle.write(block)
                    update(len(block))
            except (OSError, urllib.error.URLError) as err:
                raise DataError(url, f"download interrupted ({err}); run the same command again to resume") from None
        if total is not None and part.stat().st_size < total:
            raise DataError(url, f"download interrupted at {part.stat().st_size:,} of {total:,} bytes; run the same "
                                 "command again to resume")
    return part


def _unpack(archive: Path, data_dir: Path) -> list[str]:
    """The archive's members, under their own paths, into ``data_dir``; nothing outside it."""
    root = data_dir.resolve()
    names = []
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                target = (root / member.filename).resolve()
                if root not in target.parents and target != root:
                    raise DataError(archive, f"member {member.filename!r} would be written outside {root}")
                if member.is_dir():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".tmp")
                with zf.open(member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(tmp, target)
                names.append(member.filename)
    except zipfile.BadZipFile as err:
        raise DataError(archive, f"not a zip archive ({err})") from None
    return names


def fetch(source: Source, data_dir: Path, progress: Progress | None = None, mirror: str | None = None) -> dict:
    """Download, verify and unpack ``source`` under ``data_dir``; returns what the stamp records.

    ``mirror`` replaces each URL's folder (the file name is kept), for a local copy of the files.
    """
    data_dir = Path(data_dir)
    downloads = data_dir / ".downloads"
    verified: dict[str, str] = {}
    for remote in source.files:
        url = remote.url if mirror is None else mirror.rstrip("/") + "/" + remote.url.rsplit("/", 1)[1]
        part = downloads / (remote.url.rsplit("/", 1)[1] + ".part")
        download(url, part, progress)
        try:
            sha256 = check_digest(part, remote.digest)
        except DataError:
            part.unlink(missing_ok=True)
            raise
        verified[remote.url] = remote.digest or f"unverified (sha256:{sha256})"
        if remote.unpack:
            _unpack(part, data_dir)
            part.unlink()
        else:
            target = data_dir / remote.target
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, target)
    for member, expected in source.member_digests.items():
        check_digest(data_dir / member, expected)
        verified[member] = expected
    stamp = {"source": source.name, "verified": verified}
    (data_dir / f".fetched-{source.name}.json").write_text(json.dumps(stamp, indent=2))
    return stamp


def status(source: Source, data_dir: Path) -> str:
    """What ``bench data list`` says of one source under ``data_dir``."""
    data_dir = Path(data_dir)
    if not (data_dir / marker(source)).is_file():
        return "absent"
    stamp = data_dir / f".fetched-{source.name}.json"
    if not stamp.is_file():
        if source.member_digests:
            try:
                for member, expected in source.member_digests.items():
                    check_digest(data_dir / member, expected)
            except DataError:
                return "present, but a file differs from its published checksum"
            return "present, verified (file checksums)"
        return "present (not fetched by bench: unverified)"
    digests = json.loads(stamp.read_text())["verified"].values()
    if any(str(d).startswith("unverified") for d in digests):
        return "present (fetched; no published checksum to verify)"
    return "present, verified"

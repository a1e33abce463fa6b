"""Resumable, verified HTTP downloads of single files (used by `audioret download`).

Why not a one-liner `requests.get`: the Clotho archives are 1-4.5 GB on a server that drops long connections now
and then. A download therefore goes to `<name>.part`, continues with an HTTP Range request after a dropped
connection or a killed process, is checked (size, md5) before it is renamed to its final name, and a file that
fails the check is kept aside as `<name>.bad-md5` (never silently deleted) so the user can inspect it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests
import urllib3
from tqdm import tqdm

from audioret.cache.publish import human_bytes as human

CHUNK = 1 << 14  # small enough that a killed run leaves most of what it received on disk
TIMEOUT = (15.0, 60.0)  # (connect, read) seconds: a stalled read is retried, not waited for forever
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class RetryableStatus(Exception):
    """An HTTP answer worth retrying (a 5xx, or 408/429 where the caller has no better name for it): the server is
    there but busy. Downloads (here) and the Google translator (pipeline/translate/google.py) retry on it."""


class DownloadError(Exception):
    """A one-line, user-facing reason why one file could not be fetched."""


class NetworkError(DownloadError):
    """The server could not be reached at all: the other files would fail the same way, so the run stops."""


class DiskSpaceError(DownloadError):
    """Not enough free disk for what comes next."""


class ChecksumError(DownloadError):
    """The file arrived but its size or md5 differs from the table; it was kept aside under `bad_path`."""

    def __init__(self, message: str, bad_path: Path):
        super().__init__(message)
        self.bad_path = bad_path


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset record. `size`/`md5` are None where no published value was found."""

    name: str
    size: int | None
    md5: str | None
    split: str | None = None  # the split an archive or CSV belongs to; None for split-independent files


@dataclass
class FetchOptions:
    retries: int = 5
    backoff: float = 2.0  # seconds before the first retry, doubled each time
    timeout: tuple[float, float] = TIMEOUT
    min_free: int = 1 << 30  # bytes that must stay free on the disk after a download
    progress: bool = True


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """md5 of a file, read in chunks (the archives are larger than RAM on small machines)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, remote: RemoteFile) -> str | None:
    """None if `path` matches the table; otherwise a short reason. Size first: it is free, md5 reads the file."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return f"size {size} bytes, expected {remote.size}"
    if remote.md5 is not None:
        actual = md5_file(path)
        if actual != remote.md5.lower():
            return f"md5 {actual}, expected {remote.md5}"
    return None


def keep_aside(path: Path) -> Path:
    """Rename a file that failed its check to `<name>.bad-md5` (or `.bad-md5.N` if taken) and return the new path."""
    target = path.with_name(path.name.replace(".part", "") + ".bad-md5")
    n = 1
    while target.exists():
        target = target.with_name(f"{path.name.replace('.part', '')}.bad-md5.{n}")
        n += 1
    os.replace(path, target)
    return target


def require_free(directory: Path, needed: int, min_free: int, what: str) -> None:
    """Raise DiskSpaceError before writing `needed` bytes if that would leave less than `min_free` free."""
    free = shutil.disk_usage(directory).free
    if free - needed < min_free:
        raise DiskSpaceError(
            f"{what}: not enough free disk in {directory}: needs {human(needed)} plus {human(min_free)} headroom, "
            f"{human(free)} free"
        )


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def fetch(session: requests.Session, url: str, dest: Path, remote: RemoteFile, opts: FetchOptions) -> str:
    """Make `dest` a verified copy of `url`. Returns "present" (already verified, nothing fetched) or "downloaded".

    Raises NetworkError (unreachable), DiskSpaceError, ChecksumError (bad copy kept aside) or DownloadError.
    """
    if remote.md5 is None:
        warn(f"{remote.name}: no published md5 in the table; checking " +
             ("its size only" if remote.size is not None else "nothing (size unknown too)"))
    if dest.exists():
        problem = check_file(dest, remote)
        if problem is None:
            return "present"
        bad = keep_aside(dest)
        warn(f"{dest}: existing copy does not match ({problem}); kept aside as {bad.name}, fetching again")
    part = dest.with_name(dest.name + ".part")
    attempt, best = 0, -1
    while True:
        try:
            _stream_to_part(session, url, part, remote, opts)
            break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError, RetryableStatus) as exc:
            have = part.stat().st_size if part.exists() else 0
            attempt = 1 if have > best >= 0 else attempt + 1  # a drop after progress starts a fresh count
            best = max(best, have)
            unreachable = isinstance(exc, requests.ConnectionError) and _no_connect(exc)
            if attempt > opts.retries:
                reason = _one_line(exc)
                if unreachable:
                    raise NetworkError(f"cannot reach {url}: {reason} (network unreachable?)") from None
                raise DownloadError(f"{remote.name}: gave up after {opts.retries} retries: {reason}") from None
            wait = opts.backoff * (2 ** (attempt - 1))
            warn(f"{remote.name}: {_one_line(exc)}; retry {attempt}/{opts.retries} in {wait:.1f} s "
                 f"(resuming at {human(have)})")
            time.sleep(wait)
    problem = check_file(part, remote)
    if problem is not None:
        bad = keep_aside(part)
        raise ChecksumError(f"{remote.name}: checksum mismatch ({problem}); bad copy kept as {bad}", bad)
    os.replace(part, dest)
    return "downloaded"


def _no_connect(exc: BaseException) -> bool:
    text = repr(exc)
    return any(s in text for s in ("NewConnectionError", "NameResolutionError", "Failed to resolve",
                                   "Connection refused", "Network is unreachable", "ConnectTimeout"))


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    for marker in ("Connection refused", "Network is unreachable", "Failed to resolve", "timed out",
                   "Connection broken", "IncompleteRead"):
        if marker in text:
            return marker.lower() if marker != "IncompleteRead" else "connection dropped mid-file"
    return " ".join(text.split())[:200]


def _stream_to_part(session: requests.Session, url: str, part: Path, remote: RemoteFile,
                    opts: FetchOptions) -> None:
    """One HTTP attempt: continue `part` from its current size (Range) or start it over if the server ignores it."""
    have = part.stat().st_size if part.exists() else 0
    if remote.size is not None and have > remote.size:
        part.unlink()  # longer than the file can be: not a prefix of it
        have = 0
    if remote.size is not None and have == remote.size:
        return  # complete already (killed between the last byte and the rename): just verify
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, headers=headers, stream=True, timeout=opts.timeout) as resp:
        if resp.status_code == 416 and have:
            return  # the server says there is nothing after `have`: the part is complete; the check decides
        if resp.status_code in RETRY_STATUS:
            raise RetryableStatus(f"HTTP {resp.status_code} from {url}")
        if resp.status_code not in (200, 206):
            raise DownloadError(f"{remote.name}: HTTP {resp.status_code} {resp.reason} from {url}")
        if resp.status_code == 206:
            start = _range_start(resp.headers.get("Content-Range", ""))
            if start != have:
                raise DownloadError(f"{remote.name}: server resumed at byte {start}, asked for {have} ({url})")
            mode = "ab"
        else:
            have, mode = 0, "wb"  # no Range support: start over
        length = resp.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else (
            remote.size - have if remote.size is not None else 0)
        part.parent.mkdir(parents=True, exist_ok=True)
        require_free(part.parent, remaining, opts.min_free, remote.name)
        total = have + remaining if remaining else remote.size
        with open(part, mode) as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                           unit_divisor=1024, desc=remote.name, disable=not opts.progress,
                                           file=sys.stderr, leave=False) as bar:
            got = 0
            for block in _blocks(resp):
                out.write(block)
                out.flush()  # a killed process leaves a valid prefix on disk, which the next run resumes
                got += len(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if length and length.isdigit() and got < int(length):
            raise requests.exceptions.ChunkedEncodingError(f"connection dropped after {got} of {length} bytes")


def _blocks(resp: requests.Response) -> Iterator[bytes]:
    """The body as it arrives. urllib3 2's read1 hands over whatever is there, so bytes received before a
    dropped connection reach the .part file instead of dying in a half-filled read buffer."""
    raw = resp.raw
    if not hasattr(raw, "read1"):  # urllib3 1.26
        yield from resp.iter_content(CHUNK)
        return
    while block := raw.read1(CHUNK):
        yield block


def _range_start(content_range: str) -> int:
    """First byte of a `Content-Range: bytes START-END/TOTAL` header (-1 when it is missing or malformed)."""
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


def make_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = "audioret-download/0.1"
    return session

"""Readers check a shard's payload digest the first time a process uses it; unreadable shards get named.

Why readers check at all (not only `cache verify`): a few flipped bytes inside the features matrix leave a readable
HDF5 file, so training and retrieval would quietly compute on damaged numbers. The check uses the fast xxh3-128
digest (sha256 for older shards), once per process per shard file, remembered across fork so DataLoader workers
never redo the parent's check; AUDIORET_NO_VERIFY=1 (`--no-verify`) skips it. Why this digest and when:
docs/cache-format.md.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator, Mapping

import h5py
import numpy as np

from audioret.cache.manifest import CacheIntegrityError
from audioret.cache.shards import CHECKSUM_ATTR, FAST_CHECKSUM_ATTR, payload_digests

NO_VERIFY_ENV = "AUDIORET_NO_VERIFY"
_VERIFIED: set[tuple] = set()
_WARNED_SLOW: set[str] = set()


class ShardReadError(OSError):
    """A shard file HDF5 cannot read (truncated, damaged metadata, missing); the message names the file."""


def verification_enabled() -> bool:
    """False when `--no-verify` (AUDIORET_NO_VERIFY=1) asked to skip payload checks."""
    return os.environ.get(NO_VERIFY_ENV, "").strip() in ("", "0")


def forget_verified() -> None:
    """Forget which shards this process has checked (benchmarks measure the first check again)."""
    _VERIFIED.clear()


def repair_hint(path: Path, kind: str) -> str:
    """What to do about a damaged shard at CACHE_ROOT/<kind>/<key16>/shard-NNNNN.h5."""
    root = path.parent.parent.parent
    return (f"delete it and re-run `audioret prep {kind}` with the same arguments to rewrite it "
            f"(`audioret cache verify {root}` lists every damaged shard)")


@contextmanager
def open_shard(path: str | Path, kind: str) -> Iterator[h5py.File]:
    """`h5py.File(path, "r")` whose failures (h5py's OSError and KeyError, which do not name the file) become one
    ShardReadError line naming the shard and the repair."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            yield f
    except ShardReadError:
        raise
    except (OSError, KeyError) as exc:
        detail = (str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)).strip().splitlines()
        raise ShardReadError(f"{path}: unreadable {kind} shard ({detail[0] if detail else type(exc).__name__}); "
                             f"{repair_hint(path, kind)}") from exc


def verify_shard(path: str | Path, kind: str, manifest_sha256: str | None = None, enabled: bool | None = None,
                 h5: h5py.File | None = None, strings: Mapping[str, np.ndarray] | None = None) -> None:
    """Raise CacheIntegrityError (one line: the shard, the repair) unless the shard's payload matches the checksum
    recorded when it was published (and the manifest's record of it). Cheap after the first call per process.

    `h5`: the shard already open (read in the same pass); `strings`: its string datasets already read raw, so a
    reader that needs them anyway (the caption cache) reads each string once (`payload_digests`)."""
    if not (verification_enabled() if enabled is None else enabled):
        return
    path = Path(path)
    st = path.stat()
    identity = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if identity in _VERIFIED:
        return
    with open_shard(path, kind) if h5 is None else nullcontext(h5) as f:
        recorded_sha = f.attrs.get(CHECKSUM_ATTR)
        if manifest_sha256 and recorded_sha != manifest_sha256:
            raise CacheIntegrityError(f"{path}: not the shard the manifest recorded (payload sha256 differs); "
                                      f"{repair_hint(path, kind)}")
        fast = f.attrs.get(FAST_CHECKSUM_ATTR)
        algorithm, recorded = ("xxh3_128", fast) if fast is not None else ("sha256", recorded_sha)
        if fast is None:
            _warn_slow_check(path.parent)
        actual = payload_digests(f, (algorithm,), strings)[algorithm]
    if actual != recorded:
        raise CacheIntegrityError(f"{path}: payload checksum mismatch (the shard changed after prep wrote it); "
                                  f"{repair_hint(path, kind)}")
    _VERIFIED.add(identity)


def _warn_slow_check(cache_dir: Path) -> None:
    if str(cache_dir) not in _WARNED_SLOW:
        _WARNED_SLOW.add(str(cache_dir))
        warnings.warn(f"{cache_dir}: shards predate the fast payload checksum; checking them with sha256 (slower). "
                      f"Delete it and re-run `audioret prep` for the fast check, or skip checks with --no-verify",
                      stacklevel=3)


__all__ = ["NO_VERIFY_ENV", "ShardReadError", "forget_verified", "open_shard", "repair_hint", "verification_enabled",
           "verify_shard"]

"""Clip-embedding cache of `retrieve`, and where results that are only a cache may be written.

Why validate: a file that a crash, a full disk or a copy truncated would otherwise break `retrieve` for good, so a
file that cannot be loaded or does not match is discarded with a one-line warning and rebuilt (one of an older
checkpoint is stale and rebuilt silently). Why a second place: a run directory may be read-only, so the cache then
goes under `$XDG_CACHE_HOME/audioret`; writing is simply tried, since an access() check is wrong for root and ACLs.
"""
from __future__ import annotations

import errno
import hashlib
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch

from audioret.cache.publish import publish_file

NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/audioret`, or `~/.cache/audioret` (XDG Base Directory specification)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base and os.path.isabs(base) else Path.home() / ".cache") / "audioret"


def run_cache_dir(run_dir: str | Path) -> Path:
    """The user-cache folder that stands in for a (read-only) run directory's caches."""
    resolved = str(Path(run_dir).resolve())
    return user_cache_dir() / "runs" / f"{Path(resolved).name}-{hashlib.sha256(resolved.encode()).hexdigest()[:16]}"


def is_not_writable(exc: OSError) -> bool:
    return isinstance(exc, PermissionError) or exc.errno in NOT_WRITABLE


def publish_with_fallback(primary: Path, fallback: Path, write: Callable[[Path], None]) -> Path:
    """Publish to `primary`; when its folder cannot be written, to `fallback` instead. Returns where it went."""
    for target in (primary, fallback):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            return publish_file(target, write)
        except OSError as exc:
            if target is fallback or not is_not_writable(exc):
                raise
    raise AssertionError("unreachable")


def save_embeddings(primary: Path, fallback: Path, token: str, clip_ids: Sequence[str],
                    emb: torch.Tensor) -> Path:
    """Write the cache file (through an open file, so a denied write raises PermissionError, not torch's
    "enforce fail at inline_container.cc")."""
    payload = {"token": token, "clip_ids": list(clip_ids), "emb": emb.float().contiguous()}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
    return publish_with_fallback(primary, fallback, write)


def _problem(obj: object, token: str, clip_ids: Sequence[str], dim: int) -> str | None:
    """Why a loaded cache object is unusable ("stale" for another checkpoint), or None when it is good."""
    if not isinstance(obj, dict) or not {"token", "clip_ids", "emb"} <= set(obj):
        return "not an embeddings cache (keys token, clip_ids, emb expected)"
    if obj["token"] != token:
        return "stale"
    emb = obj["emb"]
    if not isinstance(emb, torch.Tensor) or not emb.is_floating_point():
        return "embeddings are not a float tensor"
    if list(obj["clip_ids"]) != list(clip_ids):
        return f"holds {len(obj['clip_ids'])} clip ids that differ from the split's {len(clip_ids)}"
    if tuple(emb.shape) != (len(clip_ids), dim):
        return f"embeddings of shape {tuple(emb.shape)}, expected {(len(clip_ids), dim)}"
    if not bool(torch.isfinite(emb).all()):
        return "embeddings contain NaN or infinite values"
    return None


def load_embeddings(path: Path, token: str, clip_ids: Sequence[str], dim: int) -> torch.Tensor | None:
    """The cached (n_clips, dim) embeddings if `path` holds valid ones for this checkpoint token, else None.

    A broken file is reported in one warning line and removed (when the folder allows), so the caller rebuilds.
    """
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        problem = _problem(obj, token, clip_ids, dim)
    except Exception as exc:  # any unreadable file (zip, pickle, EOF, I/O) is a broken cache, never fatal
        problem = f"unreadable ({(str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]})"
    if problem is None:
        return obj["emb"].float()
    if problem != "stale":
        warnings.warn(f"{path}: embeddings cache {problem}; discarded, rebuilding it", stacklevel=2)
        try:
            path.unlink()
        except OSError:
            pass  # a read-only run directory: the rebuilt cache goes to the user cache directory
    return None

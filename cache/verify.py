"""`cache ls` and `cache verify` as plain functions (the CLI only formats their results; `cache gc` is cache/gc.py).

Verification re-reads every shard: the payload checksums recorded at publish time (sha256 in the file and the
manifest, and the fast xxh3 digest the readers check, where the shard has one),
the cache key attribute, and the kind's own structural checks (offsets, shapes, dtypes against the manifest).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from audioret.cache.locks import is_locked
from audioret.cache.manifest import FAILURES_NAME, Manifest, ShardEntry, iter_caches
from audioret.cache.shards import CHECKSUM_ATTR, FAST_CHECKSUM_ATTR, payload_digests

ShardCheck = Callable[[h5py.File, ShardEntry, Manifest], list[str]]


def check_audio_shard(f: h5py.File, entry: ShardEntry, m: Manifest) -> list[str]:
    """Layout of an audio shard: contiguous float16 (frames, n_mels), offsets covering it, ids of its range."""
    problems = []
    n_mels = int(m.config.get("n_mels", 64))
    feats, offsets = f["features"], f["offsets"][()]
    ids = list(f["clip_ids"].asstr()[()])
    if feats.dtype != np.float16 or feats.ndim != 2 or feats.shape[1] != n_mels:
        problems.append(f"features are {feats.dtype} {feats.shape}, expected float16 (frames, {n_mels})")
    if feats.chunks is not None or feats.compression is not None:
        problems.append("features are chunked/compressed, expected contiguous")
    if len(offsets) != len(ids) + 1 or offsets[0] != 0 or offsets[-1] != feats.shape[0] \
            or np.any(np.diff(offsets) <= 0):
        problems.append(f"offsets do not partition the {feats.shape[0]} frames into {len(ids)} clips")
    planned = set(m.clip_ids[entry.start:entry.start + entry.count])
    if not set(ids) <= planned or len(ids) != entry.count - entry.n_failed:
        problems.append(f"holds {len(ids)} clips, manifest plans {entry.count} with {entry.n_failed} failed")
    if entry.n_frames is not None and entry.n_frames != feats.shape[0]:
        problems.append(f"{feats.shape[0]} frames, manifest records {entry.n_frames}")
    return problems


SHARD_CHECKS: dict[str, ShardCheck] = {"audio": check_audio_shard}


def register_shard_check(kind: str, check: ShardCheck) -> None:
    """Kinds defined outside this module (captions) add their structural checks here."""
    SHARD_CHECKS[kind] = check


def verify_cache(directory: str | Path) -> list[str]:
    """Every problem found in one cache, each a one-line message naming the file; empty when all is well."""
    directory = Path(directory)
    try:
        m = Manifest.read(directory)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return [f"{directory / 'manifest.json'}: unreadable manifest ({exc})"]
    if m.kind == "captions" and "captions" not in SHARD_CHECKS:
        try:
            import audioret.cache.caption_shards  # noqa: F401  (registers the captions shard check)
        except ImportError:
            pass
    problems = [] if m.complete else [f"{directory}: cache is incomplete (prep did not finish)"]
    for entry in m.shards:
        path = directory / entry.file
        if not path.exists():
            if entry.complete:
                problems.append(f"{path}: missing shard")
            continue
        try:
            with h5py.File(path, "r") as f:
                local = []
                if f.attrs.get("cache_key") != m.key:
                    local.append(f"cache_key attribute {f.attrs.get('cache_key')!r} is not {m.key}")
                digests = payload_digests(f, ("sha256", "xxh3_128"))
                actual = digests["sha256"]
                fast = f.attrs.get(FAST_CHECKSUM_ATTR)
                if f.attrs.get(CHECKSUM_ATTR) != actual or (fast is not None and fast != digests["xxh3_128"]):
                    local.append("payload checksum does not match the one recorded at publish time")
                if entry.sha256 and entry.sha256 != actual:
                    local.append("payload checksum does not match the manifest")
                check = SHARD_CHECKS.get(m.kind)
                if check:
                    local += check(f, entry, m)
        except (OSError, KeyError, ValueError) as exc:
            local = [f"unreadable ({exc})"]
        problems += [f"{path}: {p}" for p in local]
    return problems


@dataclass
class CacheSummary:
    path: Path
    kind: str
    name: str
    dataset: str
    splits: list[str]
    clips: int
    hours: float
    size_bytes: int
    key: str
    state: str  # complete | incomplete | writing | unreadable
    features: str = "?"  # audio: the feature definition (panns-logmel, passt-mel, hf:...); captions: the translator
    source: str = ""  # the folder prep read the clips from, where the cache records it (audio caches)


def features_of(m: Manifest) -> str:
    """What a cache holds, beyond its name: the audio feature definition or, for captions, the back-translation
    backend (`translator=marian`); four caches of one dataset by PANNs, PaSST, CLAP and AST differ here only."""
    config = m.config if isinstance(m.config, dict) else {}
    if m.kind == "captions":
        return f"translator={config.get('backend', '?')}"
    return str(config.get("feature", "unrecorded"))


def caches_matching(cache_root: str | Path, key: str | None = None) -> list[Path]:
    """The cache directories under `cache_root` (every one, or those whose directory name or manifest key starts
    with `key`), as `cache verify` checks them."""
    return [d for d, m in iter_caches(Path(cache_root))
            if key is None or d.name.startswith(key) or (m is not None and m.key.startswith(key))]


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def summarise(cache_root: str | Path) -> list[CacheSummary]:
    out = []
    for d, m in iter_caches(cache_root):
        if m is None:
            out.append(CacheSummary(d, d.parent.name, "?", "?", [], 0, 0.0, dir_size(d), d.name, "unreadable"))
            continue
        failed = sum(s.n_failed for s in m.shards)
        durations = m.extra.get("durations", {})
        hours = float(sum(durations.values())) / 3600 if isinstance(durations, dict) else 0.0
        state = "writing" if is_locked(d) else ("complete" if m.complete else "incomplete")
        out.append(CacheSummary(d, m.kind, m.name, m.dataset, list(m.splits), len(m.clip_ids) - failed, hours,
                                dir_size(d), m.key, state, features_of(m), str(m.extra.get("root") or "")))
    return out


__all__ = ["verify_cache", "summarise", "register_shard_check", "FAILURES_NAME"]

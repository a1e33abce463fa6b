"""The manifest: one JSON file per cache describing what the cache holds and how it was made.

Written at the start of a job with every planned shard (`complete: false`), re-published (atomically) as shards
land and at the end with `complete: true`. A reader trusts only complete caches unless told otherwise.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from audioret.cache.keys import is_key_dir_name, key_dir_name
from audioret.cache.locks import LOCK_NAME
from audioret.cache.publish import TMP_PATTERN, publish_file, publish_json

MANIFEST_NAME = "manifest.json"
FAILURES_NAME = "failures.jsonl"
KINDS = ("audio", "captions")


class CacheIntegrityError(ValueError):
    """A cache or shard does not match its manifest (wrong kind, incomplete, foreign key, wrong layout)."""


class CacheNotFoundError(Exception):
    """No (complete) cache matches the request; the message says what exists."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


_SHARD_NAME = re.compile(r"^shard-\d{5,}\.h5$")


def is_cache_file_name(name: str) -> bool:
    """True for a name the tool writes inside a cache directory: the manifest, the failure report, the writer
    lock, a shard (`shard_name`), or a temp file of one of those (`cache.publish.tmp_path_for`).

    `cache gc` deletes only such files: anything else in a cache directory was put there by someone else.
    """
    tmp = TMP_PATTERN.match(name)
    final = tmp.group("final") if tmp else name
    return final in (MANIFEST_NAME, FAILURES_NAME, LOCK_NAME) or bool(_SHARD_NAME.match(final))


@dataclass
class ShardEntry:
    """One planned shard: clips `clip_ids[start:start+count]` of the manifest, in sorted-id order."""

    file: str
    start: int
    count: int
    complete: bool = False
    sha256: str | None = None  # checksum of the shard's payload, recorded at publish time
    n_frames: int | None = None  # audio shards: rows of the features dataset
    n_failed: int = 0


@dataclass
class Manifest:
    kind: str  # "audio" | "captions"
    key: str  # full sha256 hex
    name: str  # dataset name given at prep (default: the dataset kind)
    dataset: str  # "clotho", "manifest", "audiocaps", ...
    splits: list[str]
    clip_ids: list[str]  # sorted; shard membership is fixed by this order and the shard size
    clip_splits: list[str]  # split of each clip id, aligned with clip_ids
    shard_size: int
    shards: list[ShardEntry]
    config: dict
    code_version: str
    versions: dict = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    complete: bool = False
    extra: dict = field(default_factory=dict)  # kind-specific (audio: durations per clip id)

    @property
    def dir_name(self) -> str:
        return key_dir_name(self.key)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        d = dict(d)
        d["shards"] = [ShardEntry(**s) for s in d.get("shards", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def write(self, directory: str | Path) -> Path:
        return publish_json(Path(directory) / MANIFEST_NAME, self.to_dict())

    @classmethod
    def read(cls, directory: str | Path) -> "Manifest":
        path = Path(directory) / MANIFEST_NAME
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def read_for_reading(directory: str | Path, kind: str, allow_incomplete: bool = False,
                     manifest: Manifest | None = None) -> Manifest:
    """The manifest of a cache a reader may use: of `kind`, and complete unless `allow_incomplete`. `manifest`:
    the one already read from `directory` (by `resolve_manifest`), checked instead of parsed again."""
    directory = Path(directory)
    m = manifest if manifest is not None else Manifest.read(directory)
    if m.kind != kind:
        raise CacheIntegrityError(f"{directory}: not a {kind} cache (kind {m.kind})")
    if not m.complete and not allow_incomplete:
        raise CacheIntegrityError(f"{directory}: {kind} cache is incomplete; re-run `audioret prep {kind}`")
    return m


def plan_shards(n_clips: int, shard_size: int) -> list[ShardEntry]:
    """Shard membership from the sorted clip order and the shard size alone (never from the worker count)."""
    if shard_size < 1:
        raise ValueError("shard size must be >= 1")
    return [
        ShardEntry(file=shard_name(i), start=start, count=min(shard_size, n_clips - start))
        for i, start in enumerate(range(0, n_clips, shard_size))
    ]


def cache_dir_for(cache_root: str | Path, kind: str, key: str) -> Path:
    return Path(cache_root) / kind / key_dir_name(key)


def iter_caches(cache_root: str | Path, kind: str | None = None) -> Iterator[tuple[Path, Manifest | None]]:
    """Every cache directory under `cache_root` (of `kind`), with its manifest or None if unreadable/missing.

    Only folders named like a key (`cache.keys.is_key_dir_name`) are caches; a user's own folder beside them
    (CACHE/audio/my_recordings/) is not one, and ls / verify / gc / train never treat it as one.
    """
    for k in (kind,) if kind else KINDS:
        base = Path(cache_root) / k
        if not base.is_dir():
            continue
        for d in sorted(p for p in base.iterdir() if p.is_dir() and is_key_dir_name(p.name)):
            try:
                yield d, Manifest.read(d)
            except (OSError, ValueError, TypeError, KeyError):
                yield d, None


def resolve_cache(cache_root: str | Path, kind: str, name: str | None = None, key: str | None = None,
                  where: Callable[[Manifest], bool] | None = None) -> Path:
    """The directory of the newest complete `kind` cache named `name`, or the one whose key starts with `key`.

    `where` narrows the candidates (e.g. to audio caches of one feature definition: several can share a name)."""
    return resolve_manifest(cache_root, kind, name, key, where)[0]


def resolve_manifest(cache_root: str | Path, kind: str, name: str | None = None, key: str | None = None,
                     where: Callable[[Manifest], bool] | None = None) -> tuple[Path, Manifest]:
    """`resolve_cache` with the manifest it read: a reader opening the cache uses it instead of parsing the file
    again (a 450k-clip manifest lists every clip id, split and duration: tenths of a second per parse)."""
    found = [(d, m) for d, m in iter_caches(cache_root, kind) if m is not None and (where is None or where(m))]
    if key:
        hits = [(d, m) for d, m in found if m.key.startswith(key) or d.name.startswith(key)]
        if not hits:
            raise CacheNotFoundError(f"{cache_root}: no {kind} cache with key {key}")
        if len(hits) > 1:
            raise CacheNotFoundError(f"{cache_root}: key prefix {key} is ambiguous ({len(hits)} {kind} caches)")
        d, m = hits[0]
        if not m.complete:
            raise CacheNotFoundError(f"{d}: {kind} cache {key} is incomplete; re-run prep to finish it")
        return d, m
    named = [(d, m) for d, m in found if name is None or m.name == name]
    complete = [(d, m) for d, m in named if m.complete]
    if not complete:
        names = sorted({m.name for _, m in found}) or ["none"]
        state = "only incomplete ones" if named else "none"
        raise CacheNotFoundError(
            f"{cache_root}: no complete {kind} cache named {name!r} ({state}); names present: {', '.join(names)}"
        )
    return max(complete, key=lambda dm: dm[1].created)


def publish_failures(directory: str | Path, rows: list[dict], name: str = FAILURES_NAME) -> Path:
    """Atomically write the failure report `directory/name` (default failures.jsonl): one JSON object per failed
    input."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")

    return publish_file(Path(directory) / name, write)


def finished_manifest(directory: str | Path, allow_failed: bool = True) -> Manifest | None:
    """The manifest of a complete cache whose shards are all on disk, else None (the cheap "nothing to do" test).

    `allow_failed=False` also treats shards with failed inputs as unfinished (those inputs are retried).
    """
    directory = Path(directory)
    try:
        m = Manifest.read(directory)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    ok = m.complete and all((directory / s.file).is_file() and (allow_failed or (s.complete and s.n_failed == 0))
                            for s in m.shards)
    return m if ok else None

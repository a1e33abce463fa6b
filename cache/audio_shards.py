"""Audio feature shards: the writer, and `AudioCache`, the reader the trainer uses.

One shard is one HDF5 file holding every clip's frames in one contiguous float16 matrix plus offsets, read through
a numpy memmap at the dataset's file offset and opened lazily per process (a reader inherited over fork re-opens
its maps). A shard's payload digest is checked before its first map in a process (cache/integrity.py);
`map_budget` bounds the memmaps a process keeps open so large caches stay under the open-file limit. Layout and
numbers: docs/cache-format.md.
"""
from __future__ import annotations

import os
import resource
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from audioret.cache.integrity import open_shard, verify_shard
from audioret.cache.manifest import Manifest, read_for_reading, resolve_manifest
from audioret.cache.shards import CacheIntegrityError, write_h5_shard

KIND = "audio"
FD_RESERVE = 256  # descriptors left for everything else (DataLoader queues and shared tensors, logs, sockets)
__all__ = ["AudioCache", "CacheIntegrityError", "build_audio_cache", "read_shard_clips", "stack_clips",
           "write_audio_shard"]


def write_audio_shard(
    path: str | Path,
    clip_ids: Sequence[str],
    splits: Sequence[str],
    features: Sequence[np.ndarray],
    durations: Sequence[float],
    key: str,
    config: dict,
) -> tuple[str, int]:
    """Publish one audio shard; returns (payload sha256, total frames). Features are stored as float16."""
    if not (len(clip_ids) == len(splits) == len(features) == len(durations)):
        raise ValueError("clip_ids, splits, features and durations must have the same length")
    n_mels = int(config.get("n_mels", 64))
    lengths = [int(f.shape[0]) for f in features]
    for cid, f in zip(clip_ids, features, strict=False):
        if f.ndim != 2 or f.shape[1] != n_mels:
            raise ValueError(f"{cid}: features must be (frames, {n_mels}), got {f.shape}")
    offsets = np.zeros(len(features) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    matrix = (np.concatenate(features, axis=0) if features else np.zeros((0, n_mels))).astype(np.float16)
    sha = write_h5_shard(
        path,
        {
            "features": matrix,
            "offsets": offsets,
            "clip_ids": np.array(list(clip_ids), dtype=object),  # object dtype: stays a string dataset when empty
            "split": np.array(list(splits), dtype=object),
            "durations": np.asarray(durations, dtype=np.float64),
        },
        {"cache_key": key, "config": config, "kind": KIND},
    )
    return sha, int(offsets[-1])


def map_budget(n_shards: int, reserve: int = FD_RESERVE) -> int:
    """How many shard memmaps this process may keep open: all `n_shards` where the open-file limit allows, after
    raising the soft RLIMIT_NOFILE toward the hard one as far as needed (a per-process setting, inherited by
    forked workers); otherwise what leaves `reserve` descriptors (at most half the limit) for everything else."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n_shards + reserve
    if soft != resource.RLIM_INFINITY and soft < want:
        raised = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    return n_shards if soft == resource.RLIM_INFINITY else max(1, min(n_shards, soft - min(reserve, soft // 2)))


class _ShardIndex:
    """Per-shard metadata read once (plain numpy, safe to inherit over fork)."""

    def __init__(self, path: Path, key: str, manifest_sha256: str | None = None):
        self.path = path
        self.manifest_sha256 = manifest_sha256
        with open_shard(path, KIND) as f:
            if f.attrs.get("cache_key") != key:
                raise CacheIntegrityError(f"{path}: shard belongs to cache {f.attrs.get('cache_key')!r}, not {key}")
            ds = f["features"]
            self.shape = tuple(ds.shape)
            self.dtype = np.dtype(ds.dtype)
            self.file_offset = ds.id.get_offset()  # None for an empty or non-contiguous dataset
            if ds.chunks is not None or ds.compression is not None:
                raise CacheIntegrityError(f"{path}: features dataset is chunked/compressed; expected contiguous")
            self.offsets = f["offsets"][()].astype(np.int64)
            self.clip_ids: list[str] = f["clip_ids"].asstr()[()].tolist()
            self.splits: list[str] = f["split"].asstr()[()].tolist()
            self.durations = f["durations"][()].astype(np.float64)

    def memmap(self) -> np.ndarray:
        if self.shape[0] == 0 or self.file_offset is None:
            return np.zeros(self.shape, dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.file_offset, shape=self.shape)


def read_shard_clips(path: str | Path, key: str, manifest_sha256: str | None,
                     clip_ids: Sequence[str]) -> dict[str, tuple[np.ndarray, float]]:
    """clip id → (float16 features copied out, duration) for the `clip_ids` a shard of cache `key` holds, its
    payload checked first (always: the copy becomes part of another cache). Raises CacheIntegrityError or
    ShardReadError (one line naming the shard); ids the shard lacks are left out."""
    path = Path(path)
    verify_shard(path, KIND, manifest_sha256, enabled=True)
    shard = _ShardIndex(path, key, manifest_sha256)
    index = {c: i for i, c in enumerate(shard.clip_ids)}
    rows = shard.memmap()
    return {c: (np.array(rows[shard.offsets[index[c]]:shard.offsets[index[c] + 1]]), float(shard.durations[index[c]]))
            for c in clip_ids if c in index}


class AudioCache:
    """Random access to every clip of one complete audio cache, by clip id or global index."""

    def __init__(self, directory: str | Path, allow_incomplete: bool = False, verify: bool | None = None,
                 manifest: Manifest | None = None):
        """`verify`: check payload checksums on first use (default: unless AUDIORET_NO_VERIFY=1, `--no-verify`).
        `manifest`: the one `open` / `resolve_manifest` already read (not parsed twice)."""
        self.directory = Path(directory)
        self.verify_payload = verify
        self.manifest = read_for_reading(self.directory, KIND, allow_incomplete, manifest)
        self.key = self.manifest.key
        self.config = dict(self.manifest.config)
        shards = [s for s in self.manifest.shards if s.complete or (self.directory / s.file).exists()]
        self._shards = [_ShardIndex(self.directory / s.file, self.key, s.sha256) for s in shards]
        self.clip_ids: list[str] = [c for s in self._shards for c in s.clip_ids]
        self.splits: list[str] = [c for s in self._shards for c in s.splits]
        self.durations = np.concatenate([s.durations for s in self._shards]) if self._shards else np.zeros(0)
        self._shard_of = np.concatenate(
            [np.full(len(s.clip_ids), i, dtype=np.int64) for i, s in enumerate(self._shards)]
        ) if self._shards else np.zeros(0, dtype=np.int64)
        self._row_start = (np.concatenate([s.offsets[:-1] for s in self._shards]) if self._shards
                           else np.zeros(0, np.int64))
        self._row_end = np.concatenate([s.offsets[1:] for s in self._shards]) if self._shards else np.zeros(0, np.int64)
        self._index = {cid: i for i, cid in enumerate(self.clip_ids)}
        if len(self._index) != len(self.clip_ids):
            raise CacheIntegrityError(f"{self.directory}: duplicate clip ids across shards")
        self._pid: int | None = None
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()  # shard → memmap, least recently used first
        self._map_budget = len(self._shards)

    @classmethod
    def open(cls, cache_root: str | Path, name: str | None = None, key: str | None = None,
             verify: bool | None = None) -> "AudioCache":
        """The newest complete audio cache named `name` under `cache_root` (or the one with key prefix `key`)."""
        directory, manifest = resolve_manifest(cache_root, KIND, name=name, key=key)
        return cls(directory, verify=verify, manifest=manifest)

    def _map(self, shard: int) -> np.ndarray:
        """The memmap of one shard in this process (mapped on first use, its payload checked before), at most
        `map_budget` of them kept: beyond it the least recently used map is closed."""
        if self._pid != os.getpid():
            self._maps = OrderedDict()
            self._pid = os.getpid()
            self._map_budget = map_budget(len(self._shards))
        m = self._maps.get(shard)
        if m is not None:
            self._maps.move_to_end(shard)
            return m
        s = self._shards[shard]
        verify_shard(s.path, KIND, s.manifest_sha256, self.verify_payload)
        m = self._maps[shard] = s.memmap()
        if len(self._maps) > self._map_budget:
            self._maps.popitem(last=False)  # its descriptor closes with the last view of it
        return m

    def verify(self) -> None:
        """Check every shard's payload now, e.g. in a parent before it forks readers (they inherit the result)."""
        for s in self._shards:
            verify_shard(s.path, KIND, s.manifest_sha256, self.verify_payload)

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def n_mels(self) -> int:
        return int(self.config.get("n_mels", 64))

    def index_of(self, clip_id: str) -> int:
        try:
            return self._index[clip_id]
        except KeyError:
            raise KeyError(f"clip {clip_id!r} is not in audio cache {self.directory}") from None

    def positions(self, clip_ids: Sequence[str]) -> np.ndarray:
        """Global index of each clip id, -1 where this cache does not hold it (int64, one dict look-up each)."""
        index = self._index
        return np.fromiter((index.get(c, -1) for c in clip_ids), dtype=np.int64, count=len(clip_ids))

    def ids_for_split(self, split: str) -> list[str]:
        return [c for c, s in zip(self.clip_ids, self.splits, strict=False) if s == split]

    def indices_for_split(self, split: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)

    def lengths(self) -> np.ndarray:
        """Frames per clip, aligned with `clip_ids`."""
        return self._row_end - self._row_start

    def get(self, clip: str | int) -> np.ndarray:
        """Read-only float16 (frames, n_mels) view of one clip (no copy until the caller makes one)."""
        i = self.index_of(clip) if isinstance(clip, str) else int(clip)
        return self._map(int(self._shard_of[i]))[self._row_start[i]:self._row_end[i]]

    def load_all(self, indices: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Features of many clips as one float16 array + int64 offsets (n+1) + ids, for resident training."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if indices is not None:
            return (*stack_clips(self, idx), [self.clip_ids[i] for i in idx])
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(self.lengths(), out=offsets[1:])
        out = np.empty((int(offsets[-1]), self.n_mels), dtype=np.float16)
        row = 0
        for shard in range(len(self._shards)):  # whole shards: one sequential copy each
            m = self._map(shard)
            out[row:row + m.shape[0]] = m
            row += m.shape[0]
        return out, offsets, list(self.clip_ids)


def stack_clips(reader, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clips `indices` of any reader with `get(i)`, `lengths()` and `n_mels` (an `AudioCache`, or several read
    as one) as one float16 array (frames, n_mels) + int64 offsets (n+1)."""
    offsets = np.zeros(len(indices) + 1, dtype=np.int64)
    np.cumsum(reader.lengths()[indices], out=offsets[1:])
    out = np.empty((int(offsets[-1]), reader.n_mels), dtype=np.float16)
    for j, i in enumerate(indices):
        out[offsets[j]:offsets[j + 1]] = reader.get(int(i))
    return out, offsets


def build_audio_cache(
    cache_root: str | Path,
    features: dict[str, np.ndarray],
    config: dict,
    name: str,
    dataset: str = "memory",
    splits: dict[str, str] | None = None,
    durations: dict[str, float] | None = None,
    shard_size: int = 256,
    code_version: str = "memory",
) -> Manifest:
    """Write a complete audio cache from features already in memory (tests, benchmarks, imported features).

    The key covers the config, the code version and the clip ids, so distinct inputs land in distinct caches.
    """
    from audioret.cache.keys import cache_key
    from audioret.cache.manifest import cache_dir_for, plan_shards

    ids = sorted(features)
    split_of = splits or {c: "development" for c in ids}
    dur = durations or {c: features[c].shape[0] / 100.0 for c in ids}
    key = cache_key(KIND, config, code_version, {}, [{"path": c, "split": split_of[c]} for c in ids])
    directory = cache_dir_for(cache_root, KIND, key)
    directory.mkdir(parents=True, exist_ok=True)
    m = Manifest(kind=KIND, key=key, name=name, dataset=dataset, splits=sorted(set(split_of.values())),
                 clip_ids=ids, clip_splits=[split_of[c] for c in ids], shard_size=shard_size,
                 shards=plan_shards(len(ids), shard_size), config=config, code_version=code_version,
                 extra={"durations": {c: float(dur[c]) for c in ids}})
    for s in m.shards:
        part = ids[s.start:s.start + s.count]
        s.sha256, s.n_frames = write_audio_shard(directory / s.file, part, [split_of[c] for c in part],
                                                 [features[c] for c in part], [dur[c] for c in part], key, config)
        s.complete = True
    m.complete = True
    m.write(directory)
    return m

"""Caption shards: per clip its raw and normalised captions and, per pivot language, their back-translations.

Why a shard format of its own: back-translation is the slow, rate-limited step, so its result is cached once and
every training run of a search reads it. Captions per clip vary in number, hence flat caption arrays plus int64
offsets, like the audio shards' frames. `CaptionCache` reads a whole cache into memory and keeps no HDF5 handle
open, so it is safe across fork; each shard's payload digest is checked as it is read. Layout:
docs/cache-format.md.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from audioret.cache.integrity import open_shard, verify_shard
from audioret.cache.manifest import Manifest, ShardEntry, read_for_reading, resolve_manifest
from audioret.cache.shards import CacheIntegrityError, write_h5_shard
from audioret.cache.verify import register_shard_check

KIND = "captions"


def _strings(values: Sequence[str]) -> np.ndarray:
    return np.array(list(values), dtype=object)


def write_caption_shard(path: str | Path, clip_ids: Sequence[str], splits: Sequence[str],
                        raw: Sequence[Sequence[str]], captions: Sequence[Sequence[str]],
                        back: dict[str, Sequence[Sequence[str]]], back_raw: dict[str, Sequence[Sequence[str]]],
                        key: str, config: dict) -> str:
    """Publish one caption shard; per-clip lists are flattened with offsets. Returns the payload checksum."""
    counts = [len(c) for c in captions]
    if [len(r) for r in raw] != counts:
        raise ValueError(f"{path}: raw and normalised caption counts differ")
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = lambda lists: _strings([t for group in lists for t in group])  # noqa: E731
    datasets: dict[str, np.ndarray] = {
        "clip_ids": _strings(clip_ids), "split": _strings(splits), "offsets": offsets,
        "raw": flat(raw), "captions": flat(captions),
    }
    for pivot in config.get("pivots", []):
        for name, src in ((f"bt_{pivot}", back[pivot]), (f"bt_raw_{pivot}", back_raw[pivot])):
            if [len(x) for x in src] != counts:
                raise ValueError(f"{path}: back-translations ({name}) not aligned with captions")
            datasets[name] = flat(src)
    attrs = {
        "cache_key": key,
        "config": json.dumps(config, sort_keys=True),
        "normalisation": config.get("normalisation", ""),
        "backend": config.get("backend", "none"),
        "pivots": json.dumps(config.get("pivots", [])),
        "models": json.dumps(config.get("models", {}), sort_keys=True),
    }
    return write_h5_shard(Path(path), datasets, attrs)


def _read_strings(ds: h5py.Dataset) -> list[str]:
    return ds.asstr()[()].tolist() if ds.shape and ds.shape[0] else []


def _decoded(stored: np.ndarray) -> list[str]:
    """A string dataset as read raw by h5py (UTF-8 bytes) → str."""
    return [b.decode("utf-8") for b in stored.tolist()]


def check_caption_shard(f: h5py.File, entry: ShardEntry, m: Manifest) -> list[str]:
    """`cache verify`'s structural check: offsets partition the caption arrays, every per-caption array is
    aligned, the shard holds exactly its planned clip ids, and backend/pivots match the manifest."""
    problems = []
    ids = _read_strings(f["clip_ids"])
    offsets = f["offsets"][()]
    planned = m.clip_ids[entry.start:entry.start + entry.count]
    if ids != planned:
        problems.append(f"holds {len(ids)} clips, not the {entry.count} planned ({planned[:1]}...)")
    total = int(offsets[-1]) if len(offsets) else -1
    if len(offsets) != len(ids) + 1 or (len(offsets) and offsets[0] != 0) or np.any(np.diff(offsets) < 0):
        problems.append(f"offsets do not partition the captions into {len(ids)} clips")
    pivots = list(m.config.get("pivots", []))
    for name in ["raw", "captions"] + [f"bt_{p}" for p in pivots] + [f"bt_raw_{p}" for p in pivots]:
        if name not in f:
            problems.append(f"dataset {name} missing")
        elif f[name].shape[0] != total:
            problems.append(f"{name} has {f[name].shape[0]} entries, offsets say {total}")
    if f.attrs.get("backend") != m.config.get("backend") or json.loads(f.attrs.get("pivots", "[]")) != pivots:
        problems.append("backend/pivots attributes differ from the manifest config")
    return problems


register_shard_check(KIND, check_caption_shard)


class CaptionCache:
    """All captions of one caption cache, in memory: `CaptionCache(dir)` or `CaptionCache.open(root, name, key)`.

    Held as flat lists (every caption of every clip in clip order) plus int64 offsets per clip, the layout of
    the shards themselves: reading a shard is a few list extends instead of a dict per clip, which kept the open
    of a 450k-clip cache in seconds (benchmarks/scale_stream.py), and per-clip views are slices."""

    def __init__(self, directory: str | Path, allow_incomplete: bool = False, verify: bool | None = None,
                 manifest: Manifest | None = None):
        """`verify`: check payload checksums (default: unless AUDIORET_NO_VERIFY=1, `--no-verify`). `manifest`:
        the one `open` already read while choosing the cache (not parsed twice)."""
        self.directory = Path(directory)
        self.manifest = read_for_reading(self.directory, KIND, allow_incomplete, manifest)
        self.config: dict = dict(self.manifest.config)
        self.key: str = self.manifest.key
        self.backend: str = self.config.get("backend", "none")
        self.pivots: list[str] = [] if self.backend == "none" else list(self.config.get("pivots", []))
        self.clip_ids: list[str] = []
        self.splits: list[str] = []
        self._raw: list[str] = []
        self._caps: list[str] = []
        self._bt: dict[str, list[str]] = {p: [] for p in self.pivots}
        counts: list[np.ndarray] = []
        for entry in self.manifest.shards:
            if entry.complete:
                counts.append(self._read_shard(self.directory / entry.file, entry.sha256, verify))
        self._offsets = np.zeros(len(self.clip_ids) + 1, dtype=np.int64)
        if counts:
            np.cumsum(np.concatenate(counts), out=self._offsets[1:])
        self._index = {cid: i for i, cid in enumerate(self.clip_ids)}

    @classmethod
    def open(cls, cache_root: str | Path, name: str | None = None, key: str | None = None,
             verify: bool | None = None) -> "CaptionCache":
        """The newest complete captions cache named `name` (or with key prefix `key`) under `cache_root`."""
        directory, manifest = resolve_manifest(cache_root, KIND, name=name, key=key)
        return cls(directory, verify=verify, manifest=manifest)

    def _read_shard(self, path: Path, sha256: str | None, verify: bool | None) -> np.ndarray:
        """Check and append one shard's clips and captions in one pass (each string read once, as UTF-8 bytes,
        then hashed and decoded); returns its captions per clip."""
        names = ["clip_ids", "split", "raw", "captions"] + [f"bt_{p}" for p in self.pivots]
        with open_shard(path, KIND) as f:
            if f.attrs.get("cache_key") != self.key:
                raise CacheIntegrityError(
                    f"{path}: shard belongs to cache {f.attrs.get('cache_key')!r}, not {self.key}")
            stored = {name: f[name][()] for name in names if name in f}
            verify_shard(path, KIND, sha256, verify, h5=f, strings=stored)  # a missing dataset: checksum differs
            stored.update({name: f[name][()] for name in names if name not in stored})  # unchecked: KeyError
            offsets = f["offsets"][()].astype(np.int64)
        ids, splits, raw, caps = (_decoded(stored[n]) for n in names[:4])
        bts = {p: _decoded(stored[f"bt_{p}"]) for p in self.pivots}
        self.clip_ids += ids
        self.splits += splits
        self._raw += raw
        self._caps += caps
        for p in self.pivots:
            # A failed back-translation is stored as "": hand out the original so no caption is ever empty.
            self._bt[p] += [t or c for t, c in zip(bts[p], caps, strict=False)]
        return np.diff(offsets)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def index_of(self, clip_id: str) -> int:
        return self._index[clip_id]

    def _span(self, clip_id: str) -> slice:
        i = self._index[clip_id]
        return slice(int(self._offsets[i]), int(self._offsets[i + 1]))

    def captions(self, clip_id: str) -> list[str]:
        """Normalised captions: what the text encoder trains on."""
        return self._caps[self._span(clip_id)]

    def raw(self, clip_id: str) -> list[str]:
        return self._raw[self._span(clip_id)]

    def back_translations(self, clip_id: str) -> dict[str, list[str]]:
        """pivot → normalised back-translations aligned with `captions(clip_id)` ({} for backend "none")."""
        span = self._span(clip_id)
        return {p: self._bt[p][span] for p in self.pivots}

    def ids_for_split(self, split: str) -> list[str]:
        return [cid for cid, s in zip(self.clip_ids, self.splits, strict=False) if s == split]

    def caption_rows(self, split: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every caption (of `split`) in clip-id order as (clip index per row, caption index within its clip,
        normalised text): the columns `all_captions` zips, computed with numpy for the trainer's caption join."""
        counts = np.diff(self._offsets)
        clip = np.repeat(np.arange(len(self.clip_ids), dtype=np.int64), counts)
        index = np.arange(len(clip), dtype=np.int64) - self._offsets[:-1][clip]
        if split is not None:
            keep = np.flatnonzero(np.asarray(self.splits, dtype=object)[clip] == split) if len(clip) else clip
            clip, index = clip[keep], index[keep]
            return clip, index, [self._caps[r] for r in keep.tolist()]
        return clip, index, list(self._caps)

    def all_captions(self, split: str | None = None) -> list[tuple[str, int, str]]:
        """(clip_id, caption_index, normalised text) for every caption (of `split`), in clip-id order."""
        clip, index, texts = self.caption_rows(split)
        return [(self.clip_ids[c], i, t) for c, i, t in zip(clip.tolist(), index.tolist(), texts, strict=False)]


def build_caption_cache(cache_root: str | Path, captions: dict[str, list[str]], name: str,
                        dataset: str = "memory", splits: dict[str, str] | None = None,
                        shard_size: int = 1000, code_version: str = "memory") -> Manifest:
    """Write a complete caption cache (no back-translations) from captions already in memory: the counterpart of
    `cache.audio_shards.build_audio_cache` for tests and benchmarks. The texts are stored as given, already
    normalised; the key covers the config and every (clip id, split, captions) row."""
    import hashlib

    from audioret.cache.keys import cache_key
    from audioret.cache.manifest import cache_dir_for, plan_shards

    ids = sorted(captions)
    split_of = splits or {c: "development" for c in ids}
    config = {"name": name, "normalisation": "as given", "backend": "none", "pivots": [], "models": {},
              "shard_size": shard_size}
    rows = hashlib.sha256(json.dumps([[c, split_of[c], captions[c]] for c in ids]).encode("utf-8")).hexdigest()
    key = cache_key(KIND, config, code_version, {}, [{"caption_rows_sha256": rows, "n_clips": len(ids)}])
    directory = cache_dir_for(cache_root, KIND, key)
    directory.mkdir(parents=True, exist_ok=True)
    m = Manifest(kind=KIND, key=key, name=name, dataset=dataset, splits=sorted(set(split_of.values())),
                 clip_ids=ids, clip_splits=[split_of[c] for c in ids], shard_size=shard_size,
                 shards=plan_shards(len(ids), shard_size), config=config, code_version=code_version,
                 extra={"n_captions": sum(len(v) for v in captions.values()), "failures": [], "problems": []})
    for s in m.shards:
        part = ids[s.start:s.start + s.count]
        texts = [captions[c] for c in part]
        s.sha256 = write_caption_shard(directory / s.file, part, [split_of[c] for c in part], texts, texts, {}, {},
                                       key, config)
        s.complete = True
    m.complete = True
    m.write(directory)
    return m

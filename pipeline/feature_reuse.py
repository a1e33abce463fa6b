"""Features of unchanged files copied from an older cache instead of decoded again.

Why: an audio cache is keyed by every source fingerprint, so touching or adding one file of a folder gives a new
cache; decoding every file again for it made `predict` on a growing folder as slow as the first time. A clip whose
fingerprint (relative path, size, mtime_ns[, sha256]) equals the one an older complete cache of the same feature
definition and root recorded is copied from it, checksum checked first. docs/cache-format.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Collection, Sequence

from audioret.cache.manifest import Manifest, iter_caches

KIND = "audio"
FINGERPRINTS = "fingerprints"  # manifest extra: clip id → [relative path, size, mtime_ns(, sha256)]


def fingerprint_row(fp: dict) -> list:
    """The compact form a manifest records of one `cache.keys.source_fingerprint`."""
    row = [fp.get("path"), fp.get("size"), fp.get("mtime_ns")]
    return row + [fp["sha256"]] if "sha256" in fp else row


def _same_definition(a: Manifest, b: Manifest, unkeyed: Collection[str]) -> bool:
    """Same features: config (but the `unkeyed` entries: how an `hf:` name was typed), versions, dataset root."""
    def keyed(config: dict) -> dict:
        return {k: v for k, v in config.items() if k not in unkeyed}

    return (a.kind == b.kind and keyed(a.config) == keyed(b.config) and a.code_version == b.code_version
            and a.versions == b.versions and a.extra.get("root") == b.extra.get("root"))


def _shard_of(m: Manifest) -> dict[str, int]:
    """clip id → index of the planned shard that holds it."""
    return {cid: s for s, entry in enumerate(m.shards) for cid in m.clip_ids[entry.start:entry.start + entry.count]}


def reusable_clips(cache_dir: Path, m: Manifest, clip_ids: Sequence[str],
                   unkeyed: Collection[str] = ()) -> dict[str, dict]:
    """Donor shard → {"key", "sha256", "clips": [ids]} for the `clip_ids` of the cache being made (`m`, in
    `cache_dir`) that an older complete cache under the same root holds unchanged (module docstring); `unkeyed`:
    the config entries the feature definition leaves out of its key."""
    wanted = {c: m.extra[FINGERPRINTS][c] for c in clip_ids if c in m.extra.get(FINGERPRINTS, {})}
    donors = [(d, dm) for d, dm in iter_caches(cache_dir.parent.parent, KIND)
              if dm is not None and d != cache_dir and dm.complete and dm.extra.get(FINGERPRINTS)
              and _same_definition(dm, m, unkeyed)]
    found: dict[str, dict] = {}
    for d, dm in sorted(donors, key=lambda x: x[1].created, reverse=True):
        fps, decoded, shard_of = dm.extra[FINGERPRINTS], dm.extra.get("durations", {}), _shard_of(dm)
        for cid in [c for c, fp in wanted.items() if fps.get(c) == fp and c in decoded]:
            entry = dm.shards[shard_of[cid]]
            if not (entry.complete and entry.sha256):
                continue
            slot = found.setdefault(str(d / entry.file), {"key": dm.key, "sha256": entry.sha256, "clips": []})
            slot["clips"].append(cid)
            del wanted[cid]
    return found


def copied_features(reuse: dict[str, dict]) -> dict[str, tuple]:
    """clip id → (features, duration) read from the donor shards `reusable_clips` named; a donor shard that
    cannot be read or fails its checksum is skipped (its clips are decoded instead)."""
    from audioret.cache.audio_shards import read_shard_clips
    from audioret.cache.manifest import CacheIntegrityError

    out: dict[str, tuple] = {}
    for path, donor in reuse.items():
        try:
            out.update(read_shard_clips(path, donor["key"], donor["sha256"], donor["clips"]))
        except (CacheIntegrityError, OSError, KeyError, ValueError):
            continue
    return out

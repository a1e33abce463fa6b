"""`prep audio`: decode every clip once, compute its features (pipeline/feature_defs.py), and publish them into
fixed, immutable HDF5 shards.

Why it is shaped this way: the cache key covers everything that made the features, so a changed input lands in a
new directory (unchanged files' features are copied over: pipeline/feature_reuse.py); shard membership comes from
the sorted clip ids and the shard size only, so a killed run is finished by a re-run that redoes just the missing
shards, bit-identical; each task is one whole shard; an undecodable file is a failure line. docs/data.md.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from audioret.cache.executor import make_executor, map_unordered
from audioret.cache.keys import cache_key, source_fingerprint, source_relpath
from audioret.cache.locks import CacheLock
from audioret.cache.manifest import (
    Manifest,
    ShardEntry,
    cache_dir_for,
    finished_manifest,
    plan_shards,
    publish_failures,
)
from audioret.cache.publish import disk_full_error, is_disk_full, stale_temp_files
from audioret.pipeline.datasets import CLOTHO_SPLITS, ClipRecord, DatasetError, load_records
from audioret.pipeline.exclude import ExclusionReport, exclude_from
from audioret.pipeline.feature_reuse import FINGERPRINTS, copied_features, fingerprint_row, reusable_clips

KIND = "audio"


@dataclass
class PrepResult:
    """What a run did; the CLI turns it into output and an exit code."""

    cache_dir: Path
    key: str
    n_clips: int
    failures: list[dict] = field(default_factory=list)
    shards_done: int = 0
    shards_skipped: int = 0
    noop: bool = False
    decoder_warnings: int = 0  # lines the decoder printed (each shown as `warning: <path>: ...`)
    excluded: ExclusionReport | None = None  # what --exclude removed (None: no list given)
    n_decoded: int = 0  # clips decoded into the cache by this run (0 when every shard was already cached)
    n_reused: int = 0  # clips whose features this run copied from an older cache (pipeline/feature_reuse.py)


def _definition(features: str):
    from audioret.pipeline.feature_defs import feature_definition

    return feature_definition(features)


def _audio_versions(defn) -> dict:
    """Decoder versions plus the feature definition's own (e.g. transformers for `hf:` extractors)."""
    from audioret.pipeline.audio_io import decoder_versions

    return {**decoder_versions(), **defn.versions}


def compute_key(records: list[ClipRecord], root: Path, dataset: str, name: str, content_hash: bool = False,
                features: str = "panns", exclude_sha256: str | None = None,
                fingerprints: list[dict] | None = None) -> str:
    """sha256 over the feature definition (name, version, config: `key_config`), decoder versions and the source
    fingerprints.

    Each fingerprint also carries its clip id and split (they are stored in the shards, so a manifest that moves a
    clip to another split must not reuse the old cache), and the dataset kind + name join as one more entry so two
    names for the same files get separate caches that `resolve_cache(name=...)` can each find. An exclusion list's
    content hash joins as one more entry (only when a list is given, so existing keys stay as they were).
    `fingerprints`: the records' `source_fingerprint`s when the caller has them already.
    """
    fingerprints = fingerprints or [source_fingerprint(r.path, root, content_hash) for r in records]
    sources = [{**fp, "clip_id": r.clip_id, "split": r.split} for r, fp in zip(records, fingerprints, strict=False)]
    sources.append({"dataset": dataset, "name": name})
    if exclude_sha256:
        sources.append({"exclude_sha256": exclude_sha256})
    defn = _definition(features)
    return cache_key(KIND, defn.key_config(), defn.version, _audio_versions(defn), sources)


def _one_blas_thread() -> None:
    """One BLAS thread per worker: N workers on N cores, no oversubscription. The executor's initializer sets
    OMP_NUM_THREADS etc., but a spawned worker may already have loaded numpy's BLAS while importing the parent's
    modules, and BLAS reads those variables only at load time, so limit the live pools too."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


def process_shard(task: dict) -> dict:
    """Worker task: decode + compute the features (task["features"], default the PANNs log-mel) of every clip of
    one shard and publish the shard file.

    A clip that fails is left out of the shard and reported; the shard is still written so the re-run logic
    ("file exists and checksum matches → done") stays the same for every shard.
    """
    import numpy as np

    from audioret.cache.audio_shards import write_audio_shard
    from audioret.pipeline.audio_io import AudioDecodeError, load_mono

    _one_blas_thread()
    defn = _definition(task.get("features", "panns"))
    ids, splits, feats, durations, failures, messages = [], [], [], [], [], []
    copied = copied_features(task.get("reuse", {}))
    for clip_id, split, path in zip(task["clip_ids"], task["splits"], task["paths"], strict=False):
        if clip_id in copied:  # unchanged since an older cache: its features as decoding would give them
            feats.append(copied[clip_id][0])
            ids.append(clip_id)
            splits.append(split)
            durations.append(copied[clip_id][1])
            continue

        def to_parent(message: str, path: str = path) -> None:  # printed by the parent, above its progress bar
            messages.append({"file": path, "message": message})

        try:
            y = load_mono(path, defn, to_parent)  # resampled to the definition's rate; its length is the duration
            feat = defn.compute(y)
            if not np.isfinite(feat).all():  # never cache NaN/inf, whatever the decoder let through
                raise ValueError(f"{defn.name} features have NaN/inf values")
            feats.append(feat)
        except (AudioDecodeError, ValueError, OSError, MemoryError) as exc:
            failures.append({"file": path, "split": split, "clip_id": clip_id, "error": str(exc) or type(exc).__name__})
            continue
        ids.append(clip_id)
        splits.append(split)
        durations.append(len(y) / defn.sample_rate)
    sha, n_frames = write_audio_shard(task["path"], ids, splits, feats, np.asarray(durations, dtype=np.float64),
                                      task["key"], task["config"])
    return {"file": Path(task["path"]).name, "sha256": sha, "n_frames": int(n_frames), "failures": failures,
            "durations": dict(zip(ids, durations, strict=False)), "n_clips": len(task["clip_ids"]),
            "decoder_warnings": messages,
            "n_reused": sum(c in copied for c in ids)}


def _shard_on_disk_ok(cache_dir: Path, entry: ShardEntry, planned_ids: list[str]) -> dict | None:
    """If a shard file exists whose payload checksum matches its recorded one and which holds every planned clip
    (the writer finished but died before the manifest said so), return its durations; else None (redo it)."""
    import h5py

    from audioret.cache.shards import payload_checksum

    path = cache_dir / entry.file
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("payload_sha256") != payload_checksum(h5):
                return None
            ids = [x.decode() if isinstance(x, bytes) else str(x) for x in h5["clip_ids"][()]]
            if ids != planned_ids:
                return None
            entry.sha256 = str(h5.attrs["payload_sha256"])
            entry.n_frames = int(h5["features"].shape[0])
            return dict(zip(ids, (float(d) for d in h5["durations"][()]), strict=False))
    except (OSError, KeyError, ValueError):
        return None


def _new_manifest(key: str, name: str, dataset: str, records: list[ClipRecord], shard_size: int,
                  features: str = "panns") -> Manifest:
    defn = _definition(features)
    splits = sorted({r.split for r in records}, key=lambda s: (CLOTHO_SPLITS.index(s) if s in CLOTHO_SPLITS else 9, s))
    return Manifest(kind=KIND, key=key, name=name, dataset=dataset, splits=splits,
                    clip_ids=[r.clip_id for r in records], clip_splits=[r.split for r in records],
                    shard_size=shard_size, shards=plan_shards(len(records), shard_size),
                    config=defn.cache_config(), code_version=defn.version,
                    versions=_audio_versions(defn), extra={"durations": {}, "failures": [], "problems": []})


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _all_failures(m: Manifest) -> list[dict]:
    return list(m.extra.get("problems", [])) + list(m.extra.get("failures", []))


def _refuse_if_nothing_decoded(m: Manifest, cache_dir: Path, source: Path) -> None:
    """Every clip failed: an error (exit 1), not a partial success. The cache stays incomplete, so neither a
    re-run's fast path nor training ever takes it for a 0-clip dataset; failures.jsonl still lists each file."""
    if m.extra.get("durations"):
        return
    raise DatasetError(f"{source}: none of the {len(m.clip_ids)} clip(s) could be decoded, nothing was cached; "
                       f"see {cache_dir / 'failures.jsonl'}")


def prep_audio(dataset: str, root: Path, cache_root: Path, manifest: Path | None = None, name: str | None = None,
               splits: list[str] | None = None, workers: int | None = None, shard_size: int = 256,
               subsets: list[str] | None = None,
               wait_lock: float | None = 0.0, content_hash: bool = False, progress: bool = True,
               report: Callable[[str], None] | None = None, scheduler: str | None = None,
               features: str = "panns", exclude: str | Path | None = None,
               encoding: str | None = None) -> PrepResult:
    """Fill (or finish) the audio cache of `dataset` under `cache_root` with the `features` definition
    (pipeline/feature_defs.py: "panns", "passt" or "hf:<extractor>"); return what happened.

    Raises `DatasetError` when the dataset cannot be read and `CacheLockedError` when another writer holds the
    cache. `report` receives one `path: problem` line per failed file (default: stderr, above the progress bar).
    `exclude`: an exclusion list (pipeline/exclude.py) whose clips are removed before anything is cached.
    `encoding`: of the dataset's text files (None: UTF-8); not a key entry of its own: what it changes (clip ids,
    file paths) is in the key already.
    """
    root = Path(root)
    name = name or dataset
    records, problems = load_records(dataset, root, manifest, splits, subsets, encoding)
    records, problems, excluded = exclude_from(records, problems, exclude)
    if not records:
        for p in problems:
            (report or _stderr)(f"{p['file']}: {p['error']}")
        raise DatasetError(f"{manifest or root}: no usable audio clips ({len(problems)} problem rows)")
    fingerprints = [source_fingerprint(r.path, root, content_hash) for r in records]
    key = compute_key(records, root, dataset, name, content_hash, features,
                      excluded.sha256 if excluded else None, fingerprints)
    cache_dir = cache_dir_for(cache_root, KIND, key)

    done = finished_manifest(cache_dir)  # fast path: no lock needed to see a finished cache
    if done is not None and done.extra.get("durations"):
        return PrepResult(cache_dir, key, len(done.clip_ids), _all_failures(done),
                          shards_skipped=len(done.shards), noop=True, excluded=excluded)

    try:
        return _prep_locked(cache_dir, key, name, dataset, records, problems, shard_size, wait_lock, workers,
                            progress, report, scheduler, features, Path(manifest or root), excluded, root,
                            fingerprints)
    except OSError as exc:
        if is_disk_full(exc, cache_dir):
            need = space_needed(records, shard_size, cache_dir, features)
            raise disk_full_error(cache_dir, "the shards not yet written", need, "finished shards") from exc
        raise


def space_needed(records: list[ClipRecord], shard_size: int, cache_dir: Path, features: str = "panns") -> int:
    """Bytes the shards not on disk yet will take: frames × bins × 2 (float16) per clip, durations read from
    the files' headers (30 s where a header cannot be read), plus HDF5 overhead per clip and per shard."""
    import soundfile as sf

    defn = _definition(features)
    need = 0
    for entry in plan_shards(len(records), shard_size):
        if (cache_dir / entry.file).is_file():
            continue
        need += 64 << 10
        for r in records[entry.start:entry.start + entry.count]:
            try:
                seconds = sf.info(str(r.path)).duration
            except (RuntimeError, OSError, ValueError):
                seconds = 30.0
            need += (int(seconds * defn.frames_per_second) + 1) * defn.n_bins * 2 + 256
    return need


def _prep_locked(cache_dir: Path, key: str, name: str, dataset: str, records: list[ClipRecord], problems: list,
                 shard_size: int, wait_lock: float | None, workers: int | None, progress: bool,
                 report: Callable[[str], None] | None, scheduler: str | None, features: str,
                 source: Path, excluded: ExclusionReport | None, root: Path,
                 fingerprints: list[dict]) -> PrepResult:
    cache_dir.mkdir(parents=True, exist_ok=True)
    # owner_only: the lock dies with this process, not with a pool worker (or any child) that outlives it, so a
    # re-run right after `kill -9` is not refused; workers of a killed run exit on their own (cache/executor.py)
    # and write only under temp names of their own PID (cache/publish.py), so a re-run is safe beside them.
    with CacheLock(cache_dir, wait=wait_lock, owner_only=True):
        done = finished_manifest(cache_dir)  # another writer may have finished while we waited
        if done is not None and done.extra.get("durations"):
            return PrepResult(cache_dir, key, len(done.clip_ids), _all_failures(done),
                              shards_skipped=len(done.shards), noop=True, excluded=excluded)
        try:
            m = Manifest.read(cache_dir)
            if m.key != key:
                raise ValueError("key mismatch")
        except (OSError, ValueError, TypeError, KeyError):
            m = _new_manifest(key, name, dataset, records, shard_size, features)
        for tmp in stale_temp_files(cache_dir):  # half-written shards of a killed run: never read, now removed
            tmp.unlink(missing_ok=True)
        m.extra["problems"] = problems
        if excluded:
            m.extra["exclude"] = excluded.to_dict()
        # Where each clip came from (`audioret report` links the recordings); not part of the key.
        m.extra["root"] = str(root.resolve())
        m.extra["sources"] = {r.clip_id: source_relpath(r.path, root) for r in records}
        m.extra[FINGERPRINTS] = {r.clip_id: fingerprint_row(fp) for r, fp in zip(records, fingerprints, strict=False)}
        m.complete = False
        m.write(cache_dir)
        for p in problems:
            (report or _stderr)(f"{p['file']}: {p['error']}")
        result = _run_shards(m, records, cache_dir, workers or os.cpu_count() or 1, progress, report, scheduler,
                             features)
        for tmp in stale_temp_files(cache_dir):  # left by workers of a killed run that were still exiting
            tmp.unlink(missing_ok=True)
        publish_failures(cache_dir, _all_failures(m))  # before `complete`: a kill between them loses nothing
        _refuse_if_nothing_decoded(m, cache_dir, source)
        m.complete = True
        m.write(cache_dir)
    result.failures = _all_failures(m)
    result.excluded = excluded
    return result


def _shard_tasks(m: Manifest, records: list[ClipRecord], cache_dir: Path, features: str,
                 result: PrepResult) -> list[dict]:
    """One worker task per shard still to write; shards already on disk and intact are marked complete in `m` and
    counted as skipped in `result` (their failures are kept, those of shards to redo are dropped)."""
    by_id = {r.clip_id: r for r in records}
    durations: dict = m.extra.setdefault("durations", {})
    failures: list = m.extra.setdefault("failures", [])
    todo: list[dict] = []
    for entry in m.shards:
        ids = m.clip_ids[entry.start:entry.start + entry.count]
        if entry.complete and entry.sha256 and (cache_dir / entry.file).is_file():
            result.shards_skipped += 1
            continue
        found = _shard_on_disk_ok(cache_dir, entry, ids)
        if found is not None:
            entry.complete, entry.n_failed = True, 0
            durations.update(found)
            result.shards_skipped += 1
            continue
        entry.complete = False
        failures[:] = [f for f in failures if f.get("clip_id") not in set(ids)]
        todo.append({"path": str(cache_dir / entry.file), "clip_ids": ids, "key": m.key, "config": m.config,
                     "features": features,
                     "splits": [by_id[i].split for i in ids], "paths": [str(by_id[i].path) for i in ids]})
    return todo


def _run_shards(m: Manifest, records: list[ClipRecord], cache_dir: Path, workers: int, progress: bool,
                report: Callable[[str], None] | None, scheduler: str | None = None,
                features: str = "panns") -> PrepResult:
    """Skip finished shards, run the rest in a bounded process pool, re-publish the manifest after each shard."""
    from tqdm import tqdm

    durations: dict = m.extra.setdefault("durations", {})
    failures: list = m.extra.setdefault("failures", [])
    result = PrepResult(cache_dir, m.key, len(m.clip_ids))
    todo = _shard_tasks(m, records, cache_dir, features, result)
    if result.shards_skipped:
        m.write(cache_dir)
    if not todo:
        return result
    reuse = reusable_clips(cache_dir, m, [c for t in todo for c in t["clip_ids"]], _definition(features).unkeyed)
    for task in todo:
        ids = set(task["clip_ids"])
        task["reuse"] = {p: {**d, "clips": [c for c in d["clips"] if c in ids]} for p, d in reuse.items()
                         if ids.intersection(d["clips"])}
    entries = {e.file: e for e in m.shards}
    bar = tqdm(total=sum(len(t["clip_ids"]) for t in todo), unit="clip", desc="prep audio", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    t0, audio_s = time.monotonic(), 0.0
    # Local spawn pool (one BLAS thread per worker) or a Dask cluster: the shard task is the same.
    pool = make_executor(min(workers, len(todo)), scheduler=scheduler)
    try:
        for _, fut in map_unordered(pool, process_shard, todo, max_in_flight=2 * pool.workers):
            out = fut.result()
            entry = entries[out["file"]]
            entry.sha256, entry.n_frames = out["sha256"], out["n_frames"]
            entry.n_failed, entry.complete = len(out["failures"]), True
            durations.update(out["durations"])
            failures.extend(out["failures"])
            say = report or (lambda line: bar.write(line, file=sys.stderr))
            for warning in out["decoder_warnings"]:
                say(f"warning: {warning['file']}: {warning['message']}")
            result.decoder_warnings += len(out["decoder_warnings"])
            for fail in out["failures"]:
                say(f"{fail['file']}: {fail['error']}")
            m.write(cache_dir)
            result.shards_done += 1
            result.n_decoded += out["n_clips"] - len(out["failures"]) - out["n_reused"]
            result.n_reused += out["n_reused"]
            audio_s += sum(out["durations"].values())
            bar.update(out["n_clips"])
            bar.set_postfix_str(f"{audio_s / max(time.monotonic() - t0, 1e-9):.1f} audio-s/s", refresh=False)
    finally:
        pool.shutdown()
        bar.close()
    return result

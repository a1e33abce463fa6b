"""`prep audio`: decode every clip once, compute the log-mel, and publish it into fixed, immutable HDF5 shards.

Why it is shaped this way (DESIGN.md, "Shard format"):
- The cache key covers the extractor config, the code and decoder versions and every source fingerprint, so a
  changed input lands in a new directory and nothing stale is ever read.
- Shard membership comes from the sorted clip ids and the shard size only, so a run killed at any moment (kill -9
  included) is finished by a re-run that redoes just the missing shards, with bit-identical results.
- Each task is one whole shard, so a worker writes its own file (temp → fsync → rename) and the parent only
  re-publishes the small manifest; the parent never holds more than a bounded number of tasks in flight.
- A file that cannot be decoded is a failure line (failures.jsonl + stderr), not a crash; the rest completes.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cache.executor import make_executor, map_unordered
from cache.keys import cache_key, source_fingerprint, source_relpath
from cache.locks import CacheLock
from cache.manifest import Manifest, ShardEntry, cache_dir_for, finished_manifest, plan_shards, publish_failures
from cache.publish import stale_temp_files
from pipeline.datasets import CLOTHO_SPLITS, ClipRecord, DatasetError, load_records

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


def _feature_config():
    from pipeline.features import DEFAULT_CONFIG

    return DEFAULT_CONFIG


def compute_key(records: list[ClipRecord], root: Path, dataset: str, name: str, content_hash: bool = False) -> str:
    """sha256 over config, code + decoder versions and the sorted source fingerprints.

    Each fingerprint also carries its clip id and split (they are stored in the shards, so a manifest that moves a
    clip to another split must not reuse the old cache), and the dataset kind + name join as one more entry so two
    names for the same files get separate caches that `resolve_cache(name=...)` can each find.
    """
    from pipeline.audio_io import decoder_versions
    from pipeline.features import FEATURE_CODE_VERSION

    sources = [{**source_fingerprint(r.path, root, content_hash), "clip_id": r.clip_id, "split": r.split}
               for r in records]
    sources.append({"dataset": dataset, "name": name})
    return cache_key(KIND, _feature_config().to_dict(), FEATURE_CODE_VERSION, decoder_versions(), sources)


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
    """Worker task: decode + log-mel every clip of one shard and publish the shard file.

    A clip that fails is left out of the shard and reported; the shard is still written so the re-run logic
    ("file exists and checksum matches → done") stays the same for every shard.
    """
    import numpy as np

    from cache.audio_shards import write_audio_shard
    from pipeline.audio_io import AudioDecodeError, load_mono
    from pipeline.features import log_mel_chunked

    _one_blas_thread()
    cfg = _feature_config()
    ids, splits, feats, durations, failures = [], [], [], [], []
    for clip_id, split, path in zip(task["clip_ids"], task["splits"], task["paths"]):
        try:
            y = load_mono(path, cfg)  # the waveform's length is the clip's duration below
            feat = log_mel_chunked(y, cfg)
            if not np.isfinite(feat).all():  # never cache NaN/inf, whatever the decoder let through
                raise ValueError("log-mel has NaN/inf values")
            feats.append(feat)
        except (AudioDecodeError, ValueError, OSError, MemoryError) as exc:
            failures.append({"file": path, "split": split, "clip_id": clip_id, "error": str(exc) or type(exc).__name__})
            continue
        ids.append(clip_id)
        splits.append(split)
        durations.append(len(y) / cfg.sample_rate)
    sha, n_frames = write_audio_shard(task["path"], ids, splits, feats, np.asarray(durations, dtype=np.float64),
                                      task["key"], task["config"])
    return {"file": Path(task["path"]).name, "sha256": sha, "n_frames": int(n_frames), "failures": failures,
            "durations": dict(zip(ids, durations)), "n_clips": len(task["clip_ids"])}


def _shard_on_disk_ok(cache_dir: Path, entry: ShardEntry, planned_ids: list[str]) -> dict | None:
    """If a shard file exists whose payload checksum matches its recorded one and which holds every planned clip
    (the writer finished but died before the manifest said so), return its durations; else None (redo it)."""
    import h5py

    from cache.shards import payload_checksum

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
            return dict(zip(ids, (float(d) for d in h5["durations"][()])))
    except (OSError, KeyError, ValueError):
        return None


def _new_manifest(key: str, name: str, dataset: str, records: list[ClipRecord], shard_size: int) -> Manifest:
    from pipeline.audio_io import decoder_versions
    from pipeline.features import FEATURE_CODE_VERSION

    splits = sorted({r.split for r in records}, key=lambda s: (CLOTHO_SPLITS.index(s) if s in CLOTHO_SPLITS else 9, s))
    return Manifest(kind=KIND, key=key, name=name, dataset=dataset, splits=splits,
                    clip_ids=[r.clip_id for r in records], clip_splits=[r.split for r in records],
                    shard_size=shard_size, shards=plan_shards(len(records), shard_size),
                    config=_feature_config().to_dict(), code_version=FEATURE_CODE_VERSION,
                    versions=decoder_versions(), extra={"durations": {}, "failures": [], "problems": []})


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _all_failures(m: Manifest) -> list[dict]:
    return list(m.extra.get("problems", [])) + list(m.extra.get("failures", []))


def prep_audio(dataset: str, root: Path, cache_root: Path, manifest: Path | None = None, name: str | None = None,
               splits: list[str] | None = None, workers: int | None = None, shard_size: int = 256,
               wait_lock: float | None = 0.0, content_hash: bool = False, progress: bool = True,
               report: Callable[[str], None] | None = None, scheduler: str | None = None) -> PrepResult:
    """Fill (or finish) the audio cache of `dataset` under `cache_root`; return what happened.

    Raises `DatasetError` when the dataset cannot be read and `CacheLockedError` when another writer holds the
    cache. `report` receives one `path: problem` line per failed file (default: stderr, above the progress bar).
    """
    root = Path(root)
    name = name or dataset
    records, problems = load_records(dataset, root, manifest, splits)
    if not records:
        for p in problems:
            (report or _stderr)(f"{p['file']}: {p['error']}")
        raise DatasetError(f"{manifest or root}: no usable audio clips ({len(problems)} problem rows)")
    key = compute_key(records, root, dataset, name, content_hash)
    cache_dir = cache_dir_for(cache_root, KIND, key)

    done = finished_manifest(cache_dir)  # fast path: no lock needed to see a finished cache
    if done is not None:
        return PrepResult(cache_dir, key, len(done.clip_ids), _all_failures(done),
                          shards_skipped=len(done.shards), noop=True)

    cache_dir.mkdir(parents=True, exist_ok=True)
    with CacheLock(cache_dir, wait=wait_lock):
        done = finished_manifest(cache_dir)  # another writer may have finished while we waited
        if done is not None:
            return PrepResult(cache_dir, key, len(done.clip_ids), _all_failures(done),
                              shards_skipped=len(done.shards), noop=True)
        try:
            m = Manifest.read(cache_dir)
            if m.key != key:
                raise ValueError("key mismatch")
        except (OSError, ValueError, TypeError, KeyError):
            m = _new_manifest(key, name, dataset, records, shard_size)
        for tmp in stale_temp_files(cache_dir):  # half-written shards of a killed run: never read, now removed
            tmp.unlink(missing_ok=True)
        m.extra["problems"] = problems
        # Where each clip came from (`audioret report` links the recordings); not part of the key.
        m.extra["root"] = str(root.resolve())
        m.extra["sources"] = {r.clip_id: source_relpath(r.path, root) for r in records}
        m.complete = False
        m.write(cache_dir)
        for p in problems:
            (report or _stderr)(f"{p['file']}: {p['error']}")
        result = _run_shards(m, records, cache_dir, workers or os.cpu_count() or 1, progress, report, scheduler)
        for tmp in stale_temp_files(cache_dir):  # left by workers of a killed run that were still exiting
            tmp.unlink(missing_ok=True)
        publish_failures(cache_dir, _all_failures(m))  # before `complete`: a kill between them loses nothing
        m.complete = True
        m.write(cache_dir)
    result.failures = _all_failures(m)
    return result


def _run_shards(m: Manifest, records: list[ClipRecord], cache_dir: Path, workers: int, progress: bool,
                report: Callable[[str], None] | None, scheduler: str | None = None) -> PrepResult:
    """Skip finished shards, run the rest in a bounded process pool, re-publish the manifest after each shard."""
    from tqdm import tqdm

    by_id = {r.clip_id: r for r in records}
    durations: dict = m.extra.setdefault("durations", {})
    failures: list = m.extra.setdefault("failures", [])
    todo: list[dict] = []
    result = PrepResult(cache_dir, m.key, len(m.clip_ids))
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
                     "splits": [by_id[i].split for i in ids], "paths": [str(by_id[i].path) for i in ids]})
    if result.shards_skipped:
        m.write(cache_dir)
    if not todo:
        return result
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
            for fail in out["failures"]:
                (report or (lambda line: bar.write(line, file=sys.stderr)))(f"{fail['file']}: {fail['error']}")
            m.write(cache_dir)
            result.shards_done += 1
            audio_s += sum(out["durations"].values())
            bar.update(out["n_clips"])
            bar.set_postfix_str(f"{audio_s / max(time.monotonic() - t0, 1e-9):.1f} audio-s/s", refresh=False)
    finally:
        pool.shutdown()
        bar.close()
    return result

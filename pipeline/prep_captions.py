"""`prep captions`: normalise every caption, back-translate it through each pivot, publish caption shards.

Why this stage exists: back-translation is slow and (for Google) rate-limited, so it runs once per dataset into
immutable shards that every training run reads. Resumable in two layers: the SQLite translation store commits each
translation as it arrives, and the caption cache follows the audio cache's rules (key, planned shards, atomic
publish, lock, failures.jsonl). An untranslatable text is a failure (exit 3); an unusable translator stops the run
(exit 1). docs/data.md.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from audioret.cache.caption_shards import KIND, write_caption_shard
from audioret.cache.keys import cache_key, canonical_json
from audioret.cache.locks import CacheLock
from audioret.cache.manifest import Manifest, cache_dir_for, finished_manifest, plan_shards, publish_failures
from audioret.cache.publish import disk_full_error, is_disk_full
from audioret.pipeline.datasets import ClipRecord, DatasetError, load_records, no_captions_error, problem
from audioret.pipeline.exclude import ExclusionReport, exclude_from
from audioret.pipeline.text import NORMALISATION, normalise_caption
from audioret.pipeline.translate import SOURCE_LANG, Backend, TranslationResult, make_backend, translate_all
from audioret.pipeline.translate.store import TranslationStore

CODE_VERSION = "captions-v1"
DEFAULT_PIVOTS = ("de", "fr", "es")


@dataclass
class CaptionPrepResult:
    cache_dir: Path
    key: str
    n_clips: int = 0
    n_captions: int = 0
    noop: bool = False
    shards_done: int = 0
    n_requested: int = 0  # texts sent to the translator in this run (0 on a rerun)
    failures: list[dict] = field(default_factory=list)  # translation failures (exit 3)
    problems: list[dict] = field(default_factory=list)  # dataset rows skipped (e.g. audio missing)
    dropped: list[dict] = field(default_factory=list)  # captions that normalise to "" (also in problems)
    excluded: ExclusionReport | None = None  # what --exclude removed (None: no list given)


def _translator_versions(backend: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    pkg = {"google": "deep-translator", "marian": "transformers"}.get(backend)
    try:
        return {pkg: version(pkg)} if pkg else {}
    except PackageNotFoundError:
        return {}


def records_fingerprint(records: Sequence[ClipRecord]) -> dict:
    """Content fingerprint of the caption rows (clip id, split, captions): what this cache is made from.

    Captions, not audio files, are the source here, so the key ignores audio mtimes and changes with any edit of
    a caption CSV / manifest row."""
    h = hashlib.sha256()
    for r in records:
        h.update(canonical_json([r.clip_id, r.split, r.captions]).encode("utf-8") + b"\n")
    return {"caption_rows_sha256": h.hexdigest(), "n_clips": len(records)}


def caption_config(name: str, backend_name: str, backend: Backend | None, pivots: Sequence[str],
                   shard_size: int) -> dict:
    pivots = list(pivots) if backend is not None else []
    models = {p: [backend.engine(SOURCE_LANG, p), backend.engine(p, SOURCE_LANG)] for p in pivots} if backend else {}
    return {"name": name, "normalisation": NORMALISATION, "backend": backend_name, "pivots": pivots,
            "models": models, "source_lang": SOURCE_LANG, "shard_size": shard_size}


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="captions", desc="back-translate", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def _translate(backend: Backend, store: TranslationStore, texts: list[str], pivots: Sequence[str],
               batch_size: int, progress: bool) -> tuple[dict[str, TranslationResult], dict[str, TranslationResult]]:
    """EN→pivot→EN of every unique text for every pivot; returns (forward, backward) results per pivot."""
    unique = sorted({t for t in texts if t})
    fwd: dict[str, TranslationResult] = {}
    back: dict[str, TranslationResult] = {}
    with _progress(2 * len(unique) * len(pivots), progress) as bar:
        for pivot in pivots:
            bar.set_description(f"back-translate {SOURCE_LANG}->{pivot}")
            fwd[pivot] = translate_all(backend, store, unique, SOURCE_LANG, pivot, pivot, batch_size, bar.update)
            mids = sorted(set(fwd[pivot].done.values()))
            bar.set_description(f"back-translate {pivot}->{SOURCE_LANG}")
            back[pivot] = translate_all(backend, store, mids, pivot, SOURCE_LANG, pivot, batch_size, bar.update)
            bar.update(len(unique) - len(mids))  # duplicates / forward failures: the bar still reaches its total
    return fwd, back


def _shard_payload(recs: Sequence[ClipRecord], pivots: Sequence[str], fwd: dict, back: dict,
                   failures: list[dict]) -> tuple[dict, dict]:
    """Per-pivot back-translations (normalised, raw) of one shard's captions; failures appended."""
    bt: dict[str, list[list[str]]] = {p: [] for p in pivots}
    bt_raw: dict[str, list[list[str]]] = {p: [] for p in pivots}
    for r in recs:
        for p in pivots:
            norm, raw = [], []
            for i, cap in enumerate(r.captions):
                text = cap.strip()
                mid = fwd[p].done.get(text)
                out = back[p].done.get(mid) if mid is not None else None
                if out is None and text:
                    stage, src = ("forward", text) if mid is None else ("backward", mid)
                    err = (fwd[p] if mid is None else back[p]).failed.get(src, "not translated")
                    failures.append({"clip_id": r.clip_id, "split": r.split, "caption_index": i, "pivot": p,
                                     "stage": stage, "error": err})
                raw.append(out or "")
                norm.append(normalise_caption(out) if out else "")
            bt[p].append(norm)
            bt_raw[p].append(raw)
    return bt, bt_raw


def drop_empty_captions(records: Sequence[ClipRecord]) -> tuple[list[ClipRecord], list[dict]]:
    """Records without the captions that normalise to "" ("!!!", "..."), and one problem entry per dropped caption.

    Why: an empty caption would become an all-padding text input (no words to retrieve by) and, as an evaluation
    query, a row no model can answer; dropping it (warned, listed in failures.jsonl) keeps the rest usable."""
    kept: list[ClipRecord] = []
    dropped: list[dict] = []
    for r in records:
        good = [c for c in r.captions if normalise_caption(c)]
        if len(good) < len(r.captions):
            for i, c in enumerate(r.captions):
                if not normalise_caption(c):
                    dropped.append({**problem(r.path, r.split, f"caption {i + 1} {c!r} is empty after normalisation "
                                                               "(no letters or digits); dropped"),
                                    "clip_id": r.clip_id})
            r = dataclasses.replace(r, captions=good)
        kept.append(r)
    return kept, dropped



def caption_space_needed(records: Sequence[ClipRecord], n_pivots: int) -> int:
    """Bytes of the caption shards and translation store for `records`: each caption's UTF-8 text stored raw and
    normalised, and per pivot its back-translation (normalised and raw) in the shards plus the forward and backward
    translation in the SQLite store; ×2 for HDF5/SQLite overhead, plus 16 KiB per 1000 clips."""
    text = sum(len(c.encode("utf-8")) + 16 for r in records for c in r.captions)
    return 2 * text * (2 + 4 * n_pivots) + (16 << 10) * (1 + len(records) // 1000)


def _disk_full_reported(fn):
    """A full disk (OSError ENOSPC, or SQLite's "database or disk is full") becomes one DiskFullError line with
    the space the stage needs; the shards and translations committed before it stay for the re-run."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (OSError, sqlite3.Error) as exc:
            a = inspect.signature(fn).bind(*args, **kwargs)
            a.apply_defaults()
            root = Path(a.arguments["cache_root"])
            if not is_disk_full(exc, root):
                raise
            records, _ = load_records(a.arguments["dataset"], a.arguments["root"], a.arguments["manifest"],
                                      a.arguments["splits"], a.arguments["subsets"], a.arguments["encoding"])
            pivots = 0 if a.arguments["translator"] == "none" else len(a.arguments["pivots"])
            raise disk_full_error(root, "the caption shards and translations", caption_space_needed(records, pivots),
                                  "finished shards and translations") from exc
    return wrapper


@_disk_full_reported
def prep_captions(dataset: str, root: Path, cache_root: Path, manifest: Path | None = None,
                  name: str | None = None, splits: list[str] | None = None, translator: str = "none",
                  pivots: Sequence[str] = DEFAULT_PIVOTS, batch_size: int = 64, device: str = "auto",
                  marian_template: str | None = None, google: dict | None = None, shard_size: int = 1000,
                  wait_lock: float | None = 0.0, progress: bool = True,
                  subsets: list[str] | None = None, exclude: str | Path | None = None,
                  encoding: str | None = None) -> CaptionPrepResult:
    """Build (or finish) the captions cache of `dataset`; raises TranslatorUnavailable / DatasetError.

    `exclude`: an exclusion list (pipeline/exclude.py); its clips are removed exactly as `prep audio` removes them
    and its content hash joins the key. `encoding`: of the dataset's text files (None: UTF-8); it is not a key
    entry of its own, the decoded captions are (`records_fingerprint`): the same text is the same cache.
    """
    records, problems = load_records(dataset, root, manifest, splits, subsets, encoding)
    records, problems, excluded = exclude_from(records, problems, exclude)
    if not records:  # a 0-clip caption cache would be "complete" and useless
        example = f"; e.g. {problems[0]['file']}: {problems[0]['error']}" if problems else ""
        raise DatasetError(f"{manifest or root}: no usable clips ({len(problems)} problem rows{example})")
    if not any(r.captions for r in records):  # e.g. a manifest whose caption column is spelled another way
        raise no_captions_error(dataset, root, manifest, len(records), encoding)
    records, dropped = drop_empty_captions(records)
    problems += dropped
    name = name or dataset
    backend = make_backend(translator, **_backend_options(translator, batch_size, device, marian_template, google))
    config = caption_config(name, translator, backend, pivots, shard_size)
    sources = [records_fingerprint(records)] + ([{"exclude_sha256": excluded.sha256}] if excluded else [])
    key = cache_key(KIND, config, CODE_VERSION, _translator_versions(translator), sources)
    cache_dir = cache_dir_for(cache_root, KIND, key)
    result = CaptionPrepResult(cache_dir, key, len(records), sum(len(r.captions) for r in records),
                               problems=problems, dropped=dropped, excluded=excluded)
    done = finished_manifest(cache_dir, allow_failed=False)
    if done is not None:
        result.noop = True
        return result
    with CacheLock(cache_dir, wait=wait_lock, owner_only=True):  # dies with this process (pipeline/prep_audio.py)
        if finished_manifest(cache_dir, allow_failed=False) is not None:
            result.noop = True
            return result
        _fill_cache(cache_root, cache_dir, name, dataset, records, config, backend, batch_size, progress, result)
    return result


def _backend_options(translator: str, batch_size: int, device: str, marian_template: str | None,
                     google: dict | None) -> dict:
    """The keyword arguments `make_backend` takes for `translator` from prep_captions' options."""
    options: dict = {}
    if translator == "marian":
        options = {"device": device, "batch_size": batch_size}
        if marian_template:
            options["template"] = marian_template
    elif translator == "google":
        options = dict(google or {})
    return options


def _fill_cache(cache_root: Path, cache_dir: Path, name: str, dataset: str, records: list[ClipRecord], config: dict,
                backend, batch_size: int, progress: bool, result: CaptionPrepResult) -> None:
    """Under the cache's lock: translate what the unfinished shards need (through the shared translation store),
    write those shards, then publish the failures and the manifest (complete when every shard is)."""
    m = _load_or_plan(cache_dir, result.key, name, dataset, records, config)
    pending = [s for s in m.shards if not (s.complete and s.n_failed == 0 and (cache_dir / s.file).is_file())]
    todo = [r for s in pending for r in records[s.start:s.start + s.count]]
    fwd: dict = {}
    back: dict = {}
    if backend is not None and todo:
        store = TranslationStore.for_cache(cache_root)
        try:
            fwd, back = _translate(backend, store, [c.strip() for r in todo for c in r.captions],
                                   config["pivots"], batch_size, progress)
        finally:
            store.close()
        result.n_requested = sum(x.n_requested for d in (fwd, back) for x in d.values())
    for entry in pending:
        recs = records[entry.start:entry.start + entry.count]
        shard_failures: list[dict] = []
        bt, bt_raw = _shard_payload(recs, config["pivots"], fwd, back, shard_failures)
        entry.sha256 = write_caption_shard(
            cache_dir / entry.file, [r.clip_id for r in recs], [r.split for r in recs],
            [r.captions for r in recs], [[normalise_caption(c) for c in r.captions] for r in recs],
            bt, bt_raw, result.key, config)
        entry.complete, entry.n_failed = True, len(shard_failures)
        m.extra["failures"] = [f for f in m.extra.get("failures", []) if f.get("shard") != entry.file] + [
            {**f, "shard": entry.file} for f in shard_failures]
        result.shards_done += 1
        m.write(cache_dir)
    m.extra["problems"] = result.problems
    if result.excluded:
        m.extra["exclude"] = result.excluded.to_dict()
    m.complete = all(s.complete for s in m.shards)
    result.failures = list(m.extra.get("failures", []))
    publish_failures(cache_dir, result.problems + result.failures)
    m.write(cache_dir)


def _load_or_plan(cache_dir: Path, key: str, name: str, dataset: str, records: list[ClipRecord],
                  config: dict) -> Manifest:
    """The manifest of an interrupted run with the same key, or a new plan (written before any shard)."""
    try:
        m = Manifest.read(cache_dir)
        if m.key == key:
            return m
    except (OSError, ValueError, TypeError, KeyError):
        pass
    m = Manifest(kind=KIND, key=key, name=name, dataset=dataset, splits=sorted({r.split for r in records}),
                 clip_ids=[r.clip_id for r in records], clip_splits=[r.split for r in records],
                 shard_size=config["shard_size"], shards=plan_shards(len(records), config["shard_size"]),
                 config=config, code_version=CODE_VERSION, versions=_translator_versions(config["backend"]),
                 extra={"n_captions": sum(len(r.captions) for r in records), "failures": [], "problems": []})
    m.write(cache_dir)
    return m


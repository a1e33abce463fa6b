"""Retrieval and prediction with a trained run: rank clips for free-text queries, write DCASE submissions.

The application layer: the one place that joins the pipeline's features of a folder (its keyed cache, so a second
call decodes nothing) and its query normalisation to the trainer's embedding function, since the trainer never
decodes audio. Returns data and never prints; progress lines go through the `report` callback. Design:
docs/architecture.md.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from audioret.cache.manifest import publish_failures
from audioret.pipeline.datasets import DatasetError
from audioret.pipeline.folder import default_cache_root, folder_features
from audioret.pipeline.queries import read_queries
from audioret.pipeline.text import normalise_caption
from audioret.trainer.embedding_cache import publish_with_fallback, run_cache_dir
from audioret.trainer.encoders import feature_spec
from audioret.trainer.evaluate import LoadedRun, write_submission
from audioret.trainer.sources import check_audio_config

Report = Callable[[str], None]
RETRIEVE_FAILURES = "retrieve-failures.json"


def _silent(line: str) -> None:
    """The default `report`: say nothing."""


class EmptyQueryError(ValueError):
    """A query with no words left after normalisation: nothing to embed (ranking every clip by an empty text
    would look like an answer)."""

    def __init__(self, query: str) -> None:
        super().__init__(f"query {query!r} is empty after normalisation (lower case, punctuation stripped); give "
                         "words to search for, e.g. \"a dog barks\"")
        self.query = query


def normalise_queries(queries: Sequence[str]) -> list[str]:
    """Each query normalised like the training captions (pipeline/text.py); EmptyQueryError for one left empty."""
    normalised = [normalise_caption(q) for q in queries]
    for query, text in zip(queries, normalised, strict=False):
        if not text:
            raise EmptyQueryError(query)
    return normalised


@dataclass
class FolderEmbeddings:
    """The embeddings of every usable audio file of a folder, in the folder cache's clip order."""

    names: list[str]
    embeddings: torch.Tensor
    failures: list[dict] = field(default_factory=list)


def folder_embeddings(run: LoadedRun, audio_dir: Path, cache_root: Path | None = None, workers: int | None = None,
                      progress: bool = True, batch_size: int | None = None,
                      report: Report = _silent) -> FolderEmbeddings:
    """Embed every audio file under `audio_dir` with `run`, its features read from the folder's keyed cache (made
    on first use). Reports how many files were decoded now (0 when the cache was complete) and each failed file.

    `batch_size`: clips per batch (None: the run's eval_batch_size; long clips: trainer/encoders/long_clips.py).
    Raises DatasetError when no file could be used.
    """
    features = feature_spec(run.cfg.audio_encoder).features_option
    audio, prep = folder_features(audio_dir, cache_root or default_cache_root(), workers=workers, progress=progress,
                                  wait_lock=None, report=_silent, features=features)  # failures: once, below
    reused = f", {prep.n_reused} unchanged ones copied from an older cache" if prep.n_reused else ""
    report(f"features of {len(audio)} file(s) from {prep.cache_dir} ({prep.n_decoded} decoded now{reused}, "
           f"{len(prep.failures)} failed)")
    for fail in prep.failures:
        report(f"{fail['file']}: {fail['error']}")
    if len(audio) == 0:
        raise DatasetError(f"{audio_dir}: no decodable audio files ({len(prep.failures)} failed)")
    check_audio_config(audio.config, str(audio.directory), run.cfg.audio_encoder)
    emb = run.embed_features([audio.get(i) for i in range(len(audio))], batch_size)
    return FolderEmbeddings(list(audio.clip_ids), emb, list(prep.failures))


@dataclass
class Retrieval:
    """Per query, the top-k (clip name, cosine score), best first; and the files of --audio-dir that failed."""

    queries: list[str]
    results: list[list[tuple[str, float]]]
    failures: list[dict] = field(default_factory=list)


def retrieve(run_dir: Path, queries: Sequence[str], k: int = 10, split: str = "evaluation",
             audio_dir: Path | None = None, cache_root: Path | None = None, checkpoint: str = "best",
             device: str | None = None, batch_size: int | None = None, report: Report = _silent) -> Retrieval:
    """Rank the clips of a split of the run's cache, or the audio files of `audio_dir`, for each query.

    The queries are checked (EmptyQueryError) before the model loads.
    """
    normalised = normalise_queries(queries)
    run = LoadedRun(run_dir, checkpoint, device)
    failures: list[dict] = []
    if audio_dir is not None:
        folder = folder_embeddings(run, audio_dir, cache_root, progress=False, batch_size=batch_size, report=report)
        names, emb, failures = folder.names, folder.embeddings, folder.failures
    else:
        names, emb = run.clip_embeddings(split, batch_size)
    results = run.retrieve(run.query_texts(queries, normalised), names, emb, k)
    return Retrieval(list(queries), results, failures)


def write_retrieve_failures(run_dir: Path, failures: list[dict]) -> Path:
    """Write the files `retrieve --audio-dir` could not decode as JSON beside the run, or in the user cache dir
    when the run is read-only; returns where it went."""
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(failures, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    return publish_with_fallback(run_dir / RETRIEVE_FAILURES, run_cache_dir(run_dir) / RETRIEVE_FAILURES, write)


def failure_report_path(out: Path) -> Path:
    """predictions.csv → predictions.failures.jsonl (beside the submission, so each submission has its own)."""
    return out.with_name(f"{out.stem}.failures.jsonl")


@dataclass
class Prediction:
    """What `predict` wrote: the submission, and the report of the files that could not be ranked (or None)."""

    out_file: Path
    n_queries: int
    n_files: int
    top: int
    failures: list[dict]
    failure_report: Path | None


def predict(run_dir: Path, audio_dir: Path, queries_file: Path, out_file: Path, top: int = 16,
            cache_root: Path | None = None, checkpoint: str = "best", device: str | None = None,
            workers: int | None = None, progress: bool = True, encoding: str | None = None,
            batch_size: int | None = None, report: Report = _silent) -> Prediction:
    """Rank every audio file of a folder for every query of a CSV and write the DCASE submission `out_file`.

    Captions are written verbatim. Files that cannot be decoded are listed in OUT_STEM.failures.jsonl beside it;
    a stale report of an earlier prediction is removed, as it would contradict this submission. A bad query file
    (read as `encoding`, None: UTF-8) fails before the model loads or anything decodes.
    """
    queries = read_queries(queries_file, encoding)
    run = LoadedRun(run_dir, checkpoint, device)
    folder = folder_embeddings(run, audio_dir, cache_root, workers, progress, batch_size, report)
    texts = run.query_texts([q.text for q in queries], [q.normalised for q in queries])  # as the run was trained
    similarity = run.embed_texts(texts) @ folder.embeddings.T
    k = min(top, len(folder.names))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    write_submission(out_file, [q.text for q in queries], folder.names, similarity, k=k)
    failure_report = failure_report_path(out_file)
    if folder.failures:
        publish_failures(failure_report.parent, folder.failures, failure_report.name)
    elif failure_report.exists():
        failure_report.unlink()
    return Prediction(out_file, len(queries), len(folder.names), k, folder.failures,
                      failure_report if folder.failures else None)

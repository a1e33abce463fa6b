"""Embeddings, retrieval metrics, DCASE submissions and free-text retrieval for a trained run.

Why one module for validation (inside the loop) and evaluation (after it): both must embed clips and captions the
same way (whole clips, no augmentation, eval mode), or validation mAP@10 would not predict evaluation mAP@10. Clip
embeddings for `retrieve` are cached per (audio cache key, split, checkpoint save token), so a newer checkpoint
never serves old embeddings (trainer/embedding_cache.py). Metrics: trainer/metrics.py, docs/evaluation.md.
"""
from __future__ import annotations

import csv
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from audioret.cache.publish import publish_file, publish_json
from audioret.trainer.caption_text import caption_view, model_texts
from audioret.trainer.checkpoint import RUN_INFO, checkpoint_path, load_checkpoint, load_model_state
from audioret.trainer.config import from_dict, resolve_split
from audioret.trainer.data import caption_table, pad_arrays
from audioret.trainer.device import autocast, resolve_device
from audioret.trainer.embedding_cache import is_not_writable, load_embeddings, run_cache_dir, save_embeddings
from audioret.trainer.encoders import feature_spec
from audioret.trainer.metrics import MAP_CUTOFFS, chance_average_precision, multi_positive_metrics, top_k
from audioret.trainer.models import build_model
from audioret.trainer.relevance import Relevance, RelevanceMatch, match_relevance
from audioret.trainer.sources import check_audio_config


@torch.no_grad()
def embed_arrays(model, arrays: Sequence[np.ndarray], device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """(n, D) float32 CPU embeddings of whole log-mel clips (T_i, bins), in input order: batched by length, a
    clip longer than the audio encoder's chunk embedded in pieces (trainer/encoders/long_clips.py), so memory
    is bounded by `batch_size`, not by the longest clip."""
    from audioret.trainer.encoders.long_clips import embed_clips

    model.eval()
    audio = model.audio

    def pad(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return pad_arrays(clips, audio.n_mels, floor=audio.scale.floor)

    emb = embed_clips(audio, arrays, device, batch_size, pad, lambda: autocast(device))
    return torch.nn.functional.normalize(emb, dim=-1)


@torch.no_grad()
def embed_texts(model, texts: Sequence[str], device: torch.device, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    parts = []
    for s in range(0, len(texts), batch_size):
        with autocast(device):
            parts.append(model.encode_text(list(texts[s:s + batch_size])).float().cpu())
    return torch.cat(parts) if parts else torch.empty(0, model.text.embed_dim)


@dataclass
class SplitScores:
    """Scores of one split. `metrics`: text-to-audio map10, map16, r1, r5, r10 (relevance: each caption's own clip,
    or the relevance file's clips) and audio-to-text a2t_map10, a2t_r1, a2t_r5, a2t_r10 (a clip's own captions)."""

    metrics: dict[str, float]
    similarity: torch.Tensor  # (n_captions, n_clips)
    clip_ids: list[str]  # columns
    caption_clip: list[str]  # per row: its clip
    caption_index: list[int]  # per row: which caption of the clip
    caption_raw: list[str] = field(default_factory=list)  # per row: the caption verbatim, as in the source CSV
    query_rows: list[int] = field(default_factory=list)  # rows scored text-to-audio (all, or the file's queries)
    relevant: list[list[int]] = field(default_factory=list)  # per scored row: its relevant columns
    relevance: RelevanceMatch | None = None  # what a relevance file matched (None: each caption's own clip)


def score_split(model, audio, captions, split: str, device: torch.device, batch_size: int = 64,
                relevance: Relevance | None = None) -> SplitScores:
    """Embed every clip and caption of a split and score both directions (definitions: trainer/metrics.py).

    Without `relevance` each caption's only relevant clip is its own (DCASE 2022); with it, the queries of the
    relevance file are scored against their listed clips (DCASE 2025). Audio-to-text always takes a clip's own
    captions as its relevant ones.
    """
    table = caption_table(audio, captions, split)
    positions = sorted(set(table.clip_pos.tolist()), key=lambda p: audio.clip_ids[p])
    column = {p: j for j, p in enumerate(positions)}
    clip_emb = embed_arrays(model, [audio.get(p) for p in positions], device, batch_size)
    text_emb = embed_texts(model, table.texts, device)
    sim = text_emb @ clip_emb.T
    target = [column[p] for p in table.clip_pos.tolist()]
    clip_ids = [audio.clip_ids[p] for p in positions]
    raw = [captions.raw(c)[i] for c, i in zip(table.clip_ids, table.caption_index.tolist(), strict=False)]
    match = None
    if relevance is None:
        rows, relevant = list(range(len(target))), [[t] for t in target]
    else:
        match = match_relevance(relevance, raw, clip_ids, split)
        rows, relevant = match.query_rows, match.relevant
    metrics = multi_positive_metrics(sim[rows], relevant)
    captions_of_clip: list[list[int]] = [[] for _ in clip_ids]
    for row, col in enumerate(target):
        captions_of_clip[col].append(row)
    metrics.update(multi_positive_metrics(sim.T, captions_of_clip, prefix="a2t_", map_cutoffs=(10,)))
    return SplitScores(metrics, sim, clip_ids, table.clip_ids, table.caption_index.tolist(), raw, rows, relevant,
                       match)


class LoadedRun:
    """A trained run: its config, its model on a device (eval mode) and the caches it was trained on."""

    def __init__(self, run_dir: str | Path, checkpoint: str = "best", device: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        info_path = self.run_dir / RUN_INFO
        if not info_path.exists():
            raise FileNotFoundError(f"{self.run_dir}: not a training run (no {RUN_INFO})")
        self.info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))
        self.checkpoint = checkpoint
        path = checkpoint_path(self.run_dir, checkpoint)
        state = load_checkpoint(path)
        self.cfg = from_dict(state["config"], f"{self.run_dir} checkpoint config")
        self.device = resolve_device(device or self.cfg.device)
        self.model = build_model(self.cfg, feature_spec(self.cfg.audio_encoder).n_mels)
        load_model_state(self.model, state, path)
        self.model.to(self.device).eval()
        self.epoch, self.token = int(state["epoch"]), str(state["token"])

    def open_caches(self):
        from audioret.cache.audio_shards import AudioCache
        from audioret.cache.caption_shards import CaptionCache

        root = self.info["cache_root"]
        audio = AudioCache.open(root, key=self.info["audio_key"])
        check_audio_config(audio.config, str(audio.directory), self.cfg.audio_encoder)
        return audio, caption_view(CaptionCache.open(root, key=self.info["caption_key"]), self.cfg.text_normalisation)

    def embed_features(self, arrays: Sequence[np.ndarray], batch_size: int | None = None) -> torch.Tensor:
        """Embeddings of log-mels computed elsewhere (e.g. `retrieve --audio-dir`): list of (T, 64) arrays;
        `batch_size` clips or pieces per batch (None: the run's eval_batch_size)."""
        for i, a in enumerate(arrays):
            if a.ndim != 2 or a.shape[1] != self.model.audio.n_mels:
                raise ValueError(f"array {i}: expected (frames, {self.model.audio.n_mels}) log-mels, got {a.shape}")
        return embed_arrays(self.model, arrays, self.device, batch_size or self.cfg.eval_batch_size)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return embed_texts(self.model, texts, self.device)

    def query_texts(self, raw: Sequence[str], normalised: Sequence[str]) -> list[str]:
        """What the model sees of free-text queries given verbatim and normalised (pipeline/text.py): the form
        its training captions had (config key text_normalisation, trainer/caption_text.py)."""
        return model_texts(self.cfg.text_normalisation, raw, normalised)

    def clip_embeddings(self, split: str, batch_size: int | None = None) -> tuple[list[str], torch.Tensor]:
        """(clip ids, embeddings) of a split's audio, cached per audio key + split + checkpoint token.

        The cache lives in RUN_DIR/embeddings, or under the user cache dir when the run directory is read-only;
        a broken file is discarded with a warning and rebuilt (trainer/embedding_cache.py).
        """
        audio, _ = self.open_caches()
        split = resolve_split(split, set(audio.splits))
        name = f"{audio.key[:16]}-{split}-{self.checkpoint}.pt"
        primary, fallback = self.run_dir / "embeddings" / name, run_cache_dir(self.run_dir) / "embeddings" / name
        idx = audio.indices_for_split(split)
        ids = [audio.clip_ids[int(i)] for i in idx]
        for path in (primary, fallback):
            cached = load_embeddings(path, self.token, ids, self.model.audio.embed_dim)
            if cached is not None:
                return ids, cached
        emb = self.embed_features([audio.get(int(i)) for i in idx], batch_size)
        save_embeddings(primary, fallback, self.token, ids, emb)
        return ids, emb

    def retrieve(self, queries: Sequence[str], names: Sequence[str], clip_emb: torch.Tensor,
                 k: int = 10) -> list[list[tuple[str, float]]]:
        """Per query (as the model sees it: `query_texts`): the top-k (name, cosine score), best first, ties by
        name order."""
        sim = self.embed_texts(queries) @ clip_emb.T
        idx, scores = top_k(sim, k)
        return [[(names[j], float(s)) for j, s in zip(row_i.tolist(), row_s.tolist(), strict=False)]
                for row_i, row_s in zip(idx, scores, strict=False)]


def write_submission(path: Path, captions_text: Sequence[str], clip_ids: Sequence[str],
                     similarity: torch.Tensor, k: int = 10) -> Path:
    """DCASE submission: `caption,fname_1..fname_k` per caption, best clip first (ties: trainer/metrics.py).

    Captions are written verbatim, surrounding spaces included: the 2022 official scorer reads the file by
    column position and looks each caption up by its exact text in the ground-truth CSV (eval_script.py of
    github.com/xieh97/dcase2022-audio-retrieval), and some captions of Clotho's evaluation split end in a space.
    """
    idx, _ = top_k(similarity, k)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["caption", *[f"fname_{i + 1}" for i in range(idx.shape[1])]])
            for text, row in zip(captions_text, idx.tolist(), strict=False):
                w.writerow([text, *[clip_ids[j] for j in row]])
    return publish_file(path, write)


class OutputNotWritable(RuntimeError):
    """Reports cannot be written where asked (a read-only run directory without --out)."""


def check_writable(folder: Path, hint: str, create: bool = False) -> None:
    """Fail before any work when `folder` cannot take new files (tried, not guessed: root and ACLs)."""
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        if not is_not_writable(exc):
            raise
        raise OutputNotWritable(f"{folder}: not writable ({exc.strerror}); {hint}") from None


def evaluate_run(run_dir: str | Path, split: str = "evaluation", checkpoint: str = "best",
                 device: str | None = None, relevance: Relevance | None = None,
                 out_dir: str | Path | None = None) -> dict[str, Any]:
    """Score a run on a split; writes eval-<split>.json and submission-<split>.csv into out_dir (default RUN_DIR).

    A read-only RUN_DIR without out_dir fails before any scoring, naming --out: reports are results, not a
    cache, so they are not hidden in a cache directory.
    """
    run = LoadedRun(run_dir, checkpoint, device)
    out = Path(out_dir) if out_dir is not None else run.run_dir
    check_writable(out, "pass --out DIR to write the reports elsewhere" if out_dir is None
                   else "choose another --out DIR", create=out_dir is not None)
    audio, captions = run.open_caches()
    name = resolve_split(split, set(audio.splits))
    scores = score_split(run.model, audio, captions, name, run.device, run.cfg.eval_batch_size, relevance)
    return write_eval_reports(out, split, name, scores, checkpoint=checkpoint, epoch=run.epoch)


def write_eval_reports(out: Path, split: str, name: str, scores: SplitScores, **fields: Any) -> dict[str, Any]:
    """eval-<split>.json (the metrics, the chance level of the same queries, what was scored, `fields`) and the
    DCASE submission-<split>.csv in `out` (`split` as asked, `name` the cache's split it resolved to); returns the
    JSON's content. Shared by trained runs and zero-shot models (trainer/zero_shot.py): the same report files."""
    n_captions, n_clips = (int(n) for n in scores.similarity.shape)
    result: dict[str, Any] = dict(scores.metrics)
    chance = {f"chance_map{k}": sum(chance_average_precision(n_clips, len(r), k) for r in scores.relevant)
              / len(scores.relevant) for k in MAP_CUTOFFS}  # of a random ranking, same queries and |R|
    result.update(n_captions=n_captions, n_clips=n_clips, n_queries=len(scores.query_rows),
                  split=name, **fields, **chance,
                  relevance=scores.relevance.report() if scores.relevance else "each caption's own clip")
    write_submission(out / f"submission-{split}.csv", scores.caption_raw, scores.clip_ids, scores.similarity)
    publish_json(out / f"eval-{split}.json", result)
    return result

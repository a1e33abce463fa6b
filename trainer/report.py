"""`audioret report`: a static page to look at and listen to what a run retrieves on one split.

RUN_DIR/report/ holds index.html (no server, no JavaScript), the figures, log-mel images of clips whose recording
is gone, report.json with the same numbers, and with `copy_audio` the recordings. Every link is relative, so the
folder can be zipped and moved. Which queries are shown as worst and best (by rank, then margin), and where the
recordings are found: docs/evaluation.md.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from audioret.cache.publish import pid_alive, publish_file, publish_json
from audioret.trainer import report_figures as figures
from audioret.trainer import report_html
from audioret.trainer.config import resolve_split
from audioret.trainer.evaluate import SplitScores, score_split
from audioret.trainer.metrics import chance_average_precision, rank_of_target, top_k

REPORT_DIR = "report"


@dataclass
class Hit:
    clip_id: str
    score: float
    rank: int
    correct: bool


@dataclass
class RankedQuery:
    """One caption of the split as a query, with where its correct clip ranked (not pipeline/queries.py's `Query`,
    a free-text query read from a file)."""

    row: int  # row of the similarity matrix
    caption: str
    clip_id: str  # its correct clip
    rank: int
    ap10: float
    margin: float
    hits: list[Hit] = field(default_factory=list)  # top clips, then the correct clip when outside them


def rank_queries(scores: SplitScores, captions: Sequence[str], top: int = 5) -> list[RankedQuery]:
    """Every caption of a split with its correct clip's rank, AP@10, margin and top clips (same tie order as the
    metrics: score descending, then clip index)."""
    sim = scores.similarity.float()
    column = {c: j for j, c in enumerate(scores.clip_ids)}
    target = torch.tensor([column[c] for c in scores.caption_clip], dtype=torch.long)
    ranks = rank_of_target(sim, target)
    target_score = sim.gather(1, target.view(-1, 1)).squeeze(1)
    if sim.shape[1] > 1:
        others = sim.scatter(1, target.view(-1, 1), float("-inf"))
        margin = target_score - others.max(dim=1).values
    else:
        margin = torch.zeros_like(target_score)
    idx, top_scores = top_k(sim, top)
    queries = []
    for row in range(sim.shape[0]):
        rank, t = int(ranks[row]), int(target[row])
        hits = [Hit(scores.clip_ids[j], float(s), r, j == t)
                for r, (j, s) in enumerate(zip(idx[row].tolist(), top_scores[row].tolist(), strict=False), start=1)]
        if rank > len(hits):
            hits.append(Hit(scores.clip_ids[t], float(target_score[row]), rank, True))
        queries.append(RankedQuery(row, captions[row], scores.caption_clip[row], rank,
                             1.0 / rank if rank <= 10 else 0.0, float(margin[row]), hits))
    return queries


def select_queries(queries: Sequence[RankedQuery], n_worst: int = 20,
                   n_best: int = 10) -> tuple[list[RankedQuery], list[RankedQuery]]:
    """(worst, best) as the module docstring defines them; the best never repeat a worst query."""
    worst = sorted(queries, key=lambda q: (-q.rank, q.margin, q.row))[:n_worst]
    shown = {q.row for q in worst}
    best = sorted((q for q in queries if q.row not in shown), key=lambda q: (q.rank, -q.margin, q.row))[:n_best]
    return worst, best


class AudioSources:
    """The source recording of each clip of an audio cache, from what `prep audio` recorded in its manifest."""

    def __init__(self, manifest_extra: dict, audio_root: Path | None = None) -> None:
        recorded = manifest_extra.get("root")
        self.root = Path(audio_root) if audio_root is not None else (Path(recorded) if recorded else None)
        self.sources: dict[str, str] = dict(manifest_extra.get("sources") or {})

    def recorded(self, clip_id: str) -> Path | None:
        rel = self.sources.get(clip_id)
        if rel is None:
            return None
        path = Path(rel)
        return path if path.is_absolute() or self.root is None else self.root / path

    def existing(self, clip_id: str) -> Path | None:
        path = self.recorded(clip_id)
        return path if path is not None and path.is_file() else None


@dataclass
class ReportResult:
    index: Path
    linked: int  # clips shown with a player
    missing: list[str]  # clips whose source is gone or unrecorded: shown as log-mel images
    copied: int


def _safe_name(i: int, name: str) -> str:
    return f"{i:03d}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name)[-80:]


class _MediaBuilder:
    """Decides, once per clip, how it is shown and writes what it needs (log-mel PNG, audio copy) into staging."""

    def __init__(self, audio, sources: AudioSources, staging: Path, final: Path, copy_audio: bool) -> None:
        self.audio, self.sources, self.staging, self.final, self.copy_audio = audio, sources, staging, final, copy_audio
        self.media: dict[str, report_html.ClipMedia] = {}
        self.missing: list[str] = []
        self.copied = 0

    def add(self, clip_id: str) -> None:
        if clip_id in self.media:
            return
        n = len(self.media)
        recorded = self.sources.recorded(clip_id)
        media = report_html.ClipMedia(clip_id, source=str(recorded) if recorded else None)
        src = self.sources.existing(clip_id)
        if src is not None and self.copy_audio:
            rel = f"audio/{_safe_name(n, src.name)}"
            (self.staging / "audio").mkdir(exist_ok=True)
            shutil.copy2(src, self.staging / rel)
            media.audio_href, self.copied = report_html.url_path(rel), self.copied + 1
        elif src is not None:
            media.audio_href = report_html.url_path(os.path.relpath(src.resolve(), self.final.resolve()))
        else:
            rel = f"mel/{_safe_name(n, clip_id)}.png"
            (self.staging / "mel").mkdir(exist_ok=True)
            figures.log_mel_image(np.asarray(self.audio.get(clip_id)), self.staging / rel)
            media.mel_href = report_html.url_path(rel)
            self.missing.append(clip_id)
        self.media[clip_id] = media


def _clean_stale(run_dir: Path) -> None:
    """Staging folders of report builds that were killed (their pid is gone)."""
    for d in run_dir.glob(f".{REPORT_DIR}-*-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if d.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _swap_in(staging: Path, final: Path) -> None:
    """Replace the old report folder by the new one with two renames: a reader sees one or the other, whole."""
    old = final.with_name(f".{REPORT_DIR}-old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def build_report(run, split: str = "evaluation", copy_audio: bool = False, audio_root: Path | None = None,
                 n_worst: int = 20, n_best: int = 10, top: int = 5) -> ReportResult:
    """Score `run` (a trainer.evaluate.LoadedRun) on `split` and write RUN_DIR/report/ (see the module docstring)."""
    audio, captions = run.open_caches()
    split = resolve_split(split, set(audio.splits))
    scores = score_split(run.model, audio, captions, split, run.device, run.cfg.eval_batch_size)
    texts = [captions.raw(c)[i] for c, i in zip(scores.caption_clip, scores.caption_index, strict=False)]
    queries = rank_queries(scores, texts, top)
    worst, best = select_queries(queries, n_worst, n_best)

    run_dir = Path(run.run_dir)
    final = run_dir / REPORT_DIR
    _clean_stale(run_dir)
    staging = run_dir / f".{REPORT_DIR}-new-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        media = _MediaBuilder(audio, AudioSources(audio.manifest.extra, audio_root), staging, final, copy_audio)
        for q in [*worst, *best]:
            for hit in q.hits:
                media.add(hit.clip_id)
        n_captions, n_clips = scores.similarity.shape
        context = {"n_captions": int(n_captions), "n_clips": int(n_clips),
                   **{f"chance_map{k}": chance_average_precision(int(n_clips), 1, k) for k in (10, 16)}}
        rows = figures.read_metrics_csv(run_dir / "metrics.csv")
        curves = figures.training_curves(rows, staging / "training.png", report_html.METRIC_LABELS) if rows else None
        figures.rank_histogram(np.array([q.rank for q in queries]), int(n_clips), staging / "ranks.png")
        html = _render(run, split, scores.metrics, context, worst, best, media.media, top, curves is not None)
        publish_file(staging / "index.html", lambda tmp: tmp.write_text(html, encoding="utf-8"))
        publish_json(staging / "report.json", {
            "run": str(run_dir), "split": split, "checkpoint": run.checkpoint, "epoch": run.epoch,
            "metrics": scores.metrics, **context, "missing_sources": media.missing,
            "worst": [asdict(q) for q in worst], "best": [asdict(q) for q in best]})
        _swap_in(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ReportResult(final / "index.html", len(media.media) - len(media.missing), media.missing, media.copied)


def _render(run, split: str, metrics: dict, context: dict, worst: list[RankedQuery], best: list[RankedQuery],
            media: dict[str, report_html.ClipMedia], top: int, has_curves: bool) -> str:
    run_dir = Path(run.run_dir)
    meta = (f"{run_dir.resolve()} · split {split} · {run.checkpoint} checkpoint (epoch {run.epoch}) · "
            f"generated {datetime.now().astimezone().isoformat(timespec='seconds')}")
    explain_worst = ("Highest rank of the correct clip first; equal ranks: the lowest margin first (margin = score "
                     "of the correct clip minus the best score of any other clip). The correct clip is green, "
                     f"shown after the top {top} when it ranks lower.")
    explain_best = ("Lowest rank first (rank 1), equal ranks by the highest margin (how far the correct clip scores "
                    "above every other clip); no query shown as worst is repeated.")
    sections = [
        ("Metrics", report_html.metrics_table(metrics, context)),
        ("Training", report_html.figure("training.png" if has_curves else None, "training curves",
                                        "no metrics.csv in the run directory")),
        ("Rank of the correct clip", report_html.figure("ranks.png", "histogram of ranks", "")),
        (f"The {len(worst)} worst queries", f'<p class="note">{explain_worst}</p>\n'
         + "\n".join(report_html.query_block(i, q, media, top) for i, q in enumerate(worst, 1))),
        (f"The {len(best)} best queries", f'<p class="note">{explain_best}</p>\n'
         + "\n".join(report_html.query_block(i, q, media, top) for i, q in enumerate(best, 1))),
    ]
    return report_html.page(f"audioret report: {run_dir.resolve().name}", meta, sections)

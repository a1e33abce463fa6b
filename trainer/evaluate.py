"""Embeddings, retrieval metrics, DCASE submissions and free-text retrieval for a trained run.

Why one module for validation (inside the loop) and evaluation (after it): both must embed clips and captions
the same way — whole clips, no augmentation, eval mode — or validation mAP@10 would not predict evaluation mAP@10.
Clip embeddings for `retrieve` are cached in RUN_DIR/embeddings per (audio cache key, split, checkpoint save
token), so repeated queries only run the text encoder and a stale checkpoint never serves old embeddings.
"""
from __future__ import annotations

import contextlib
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cache.publish import publish_file, publish_json
from trainer.checkpoint import checkpoint_path, load_checkpoint, load_model_state
from trainer.config import TrainConfig, from_dict, resolve_split
from trainer.data import caption_table, check_audio_config, pad_arrays
from trainer.metrics import retrieval_metrics, top_k

RUN_INFO = "run.json"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (the paper's GPU recipe); full fp32 on CPU, where bf16 is slow and not needed."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_model(cfg: TrainConfig, n_mels: int = 64):
    """The bi-encoder a config describes (random audio weights; pretrained text transformer from text_model)."""
    from trainer.models import AudioEncoder, BiEncoder, TextEncoder

    audio = AudioEncoder(n_mels=n_mels, width=cfg.audio_width, embed_dim=cfg.embed_dim, n_t=cfg.n_t, w_t=cfg.w_t,
                         n_f=cfg.n_f, w_f=cfg.w_f)
    text = TextEncoder(cfg.text_model, embed_dim=cfg.embed_dim, max_tokens=cfg.max_tokens)
    return BiEncoder(audio, text, temperature=cfg.temperature, learn_temperature=cfg.learn_temperature)


@torch.no_grad()
def embed_arrays(model, arrays: Sequence[np.ndarray], device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """(n, D) float32 CPU embeddings of whole log-mel clips (T_i, 64), in input order (batched by length)."""
    model.eval()
    order = np.argsort([-a.shape[0] for a in arrays], kind="stable")
    out = torch.empty(len(arrays), model.audio.embed_dim)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        x, lengths = pad_arrays([np.asarray(arrays[i], dtype=np.float32) for i in idx], model.audio.n_mels)
        with autocast(device):
            emb = model.encode_audio(torch.from_numpy(x).to(device), torch.from_numpy(lengths).to(device))
        out[torch.from_numpy(idx)] = emb.float().cpu()
    return out


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
    metrics: dict[str, float]
    similarity: torch.Tensor  # (n_captions, n_clips)
    clip_ids: list[str]  # columns
    caption_clip: list[str]  # per row: its clip
    caption_index: list[int]  # per row: which caption of the clip


def score_split(model, audio, captions, split: str, device: torch.device, batch_size: int = 64) -> SplitScores:
    """Embed every clip and caption of a split; mAP@10 and R@1/5/10 with one relevant clip per caption."""
    table = caption_table(audio, captions, split)
    positions = sorted(set(table.clip_pos.tolist()), key=lambda p: audio.clip_ids[p])
    column = {p: j for j, p in enumerate(positions)}
    clip_emb = embed_arrays(model, [audio.get(p) for p in positions], device, batch_size)
    text_emb = embed_texts(model, table.texts, device)
    sim = text_emb @ clip_emb.T
    target = torch.tensor([column[p] for p in table.clip_pos.tolist()])
    return SplitScores(retrieval_metrics(sim, target), sim, [audio.clip_ids[p] for p in positions],
                       table.clip_ids, table.caption_index.tolist())


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
        self.model = build_model(self.cfg)
        load_model_state(self.model, state, path)
        self.model.to(self.device).eval()
        self.epoch, self.token = int(state["epoch"]), str(state["token"])

    def open_caches(self):
        from cache.audio_shards import AudioCache
        from cache.caption_shards import CaptionCache

        root = self.info["cache_root"]
        audio = AudioCache.open(root, key=self.info["audio_key"])
        check_audio_config(audio.config, str(audio.directory))
        return audio, CaptionCache.open(root, key=self.info["caption_key"])

    def embed_features(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        """Embeddings of log-mels computed elsewhere (e.g. `retrieve --audio-dir`): list of (T, 64) arrays."""
        for i, a in enumerate(arrays):
            if a.ndim != 2 or a.shape[1] != self.model.audio.n_mels:
                raise ValueError(f"array {i}: expected (frames, {self.model.audio.n_mels}) log-mels, got {a.shape}")
        return embed_arrays(self.model, arrays, self.device, self.cfg.eval_batch_size)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return embed_texts(self.model, texts, self.device)

    def clip_embeddings(self, split: str) -> tuple[list[str], torch.Tensor]:
        """(clip ids, embeddings) of a split's audio, cached per audio key + split + checkpoint token."""
        audio, _ = self.open_caches()
        split = resolve_split(split, set(audio.splits))
        path = self.run_dir / "embeddings" / f"{audio.key[:16]}-{split}-{self.checkpoint}.pt"
        if path.exists():
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if cached.get("token") == self.token:
                return list(cached["clip_ids"]), cached["emb"]
        idx = audio.indices_for_split(split)
        emb = self.embed_features([audio.get(int(i)) for i in idx])
        ids = [audio.clip_ids[int(i)] for i in idx]
        path.parent.mkdir(exist_ok=True)
        publish_file(path, lambda tmp: torch.save({"token": self.token, "clip_ids": ids, "emb": emb}, tmp))
        return ids, emb

    def retrieve(self, queries: Sequence[str], names: Sequence[str], clip_emb: torch.Tensor,
                 k: int = 10) -> list[list[tuple[str, float]]]:
        """Per (already normalised) query: the top-k (name, cosine score), best first, ties by name order."""
        sim = self.embed_texts(queries) @ clip_emb.T
        idx, scores = top_k(sim, k)
        return [[(names[j], float(s)) for j, s in zip(row_i.tolist(), row_s.tolist())]
                for row_i, row_s in zip(idx, scores)]


def write_submission(path: Path, captions_text: Sequence[str], clip_ids: Sequence[str],
                     similarity: torch.Tensor, k: int = 10) -> Path:
    """DCASE 2022 task 6b submission: `caption,fname_1..fname_10` per caption, best clip first."""
    idx, _ = top_k(similarity, k)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["caption", *[f"fname_{i + 1}" for i in range(idx.shape[1])]])
            for text, row in zip(captions_text, idx.tolist()):
                w.writerow([text, *[clip_ids[j] for j in row]])
    return publish_file(path, write)


def evaluate_run(run_dir: str | Path, split: str = "evaluation", checkpoint: str = "best",
                 device: str | None = None) -> dict[str, Any]:
    """Score a run on a split; writes RUN_DIR/eval-<split>.json and RUN_DIR/submission-<split>.csv."""
    run = LoadedRun(run_dir, checkpoint, device)
    audio, captions = run.open_caches()
    name = resolve_split(split, set(audio.splits))
    scores = score_split(run.model, audio, captions, name, run.device, run.cfg.eval_batch_size)
    result: dict[str, Any] = dict(scores.metrics)
    result.update(n_captions=int(scores.similarity.shape[0]), n_clips=int(scores.similarity.shape[1]),
                  split=name, checkpoint=checkpoint, epoch=run.epoch,
                  chance_map10=chance_map10(int(scores.similarity.shape[1])))
    raw = [captions.raw(c)[i] for c, i in zip(scores.caption_clip, scores.caption_index)]
    write_submission(run.run_dir / f"submission-{split}.csv", raw, scores.clip_ids, scores.similarity)
    publish_json(run.run_dir / f"eval-{split}.json", result)
    return result


def chance_map10(n_clips: int) -> float:
    """Expected mAP@10 of a random ranking with one relevant clip among n: (1/n) Σ_{r≤min(10,n)} 1/r."""
    return sum(1.0 / r for r in range(1, min(10, n_clips) + 1)) / max(1, n_clips)

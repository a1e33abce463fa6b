"""NT-Xent (InfoNCE) for audio–caption pairs: symmetric cross-entropy over the cosine-similarity matrix.

Why its own module: the loss has two traps the rest of the trainer must not re-implement. Two captions of the same
clip in one batch are both true matches, so neither may be the other's negative (`same_clip_mask`); and under DDP
each rank must score its local rows against the gathered global columns (`audio_all`/`text_all` and `offset`),
so trainer/loss_distributed.py only gathers and calls `nt_xent`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def mask_from_clip_ids(row_ids: Sequence | torch.Tensor, col_ids: Sequence | torch.Tensor | None = None,
                   device: torch.device | None = None) -> torch.Tensor:
    """(n_rows, n_cols) bool, True where row and column come from the same clip (diagonal included).

    Ids may be strings (clip ids) or integers (clip indices). `col_ids` defaults to `row_ids` (single process).
    """
    col_ids = row_ids if col_ids is None else col_ids
    if torch.is_tensor(row_ids) and torch.is_tensor(col_ids):
        return row_ids.view(-1, 1).to(device or row_ids.device) == col_ids.view(1, -1).to(device or row_ids.device)
    index: dict = {}
    rows = torch.tensor([index.setdefault(_key(i), len(index)) for i in row_ids], device=device)
    cols = torch.tensor([index.setdefault(_key(i), len(index)) for i in col_ids], device=device)
    return rows.view(-1, 1) == cols.view(1, -1)


def _key(item: object) -> object:
    return item.item() if torch.is_tensor(item) else item


def contrastive_logits(audio_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                       audio_all: torch.Tensor | None = None, text_all: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits_per_audio (n, N), logits_per_text (n, N)) = scale · cosine similarities.

    Embeddings are expected L2-normalised (BiEncoder does it). Row i of `logits_per_audio` scores local audio i
    against every text of the global batch (`text_all`, default the local texts), and vice versa.
    """
    text_all = text_emb if text_all is None else text_all
    audio_all = audio_emb if audio_all is None else audio_all
    return logit_scale * audio_emb @ text_all.T, logit_scale * text_emb @ audio_all.T


def nt_xent(audio_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
            same_clip_mask: torch.Tensor | None = None, *, audio_all: torch.Tensor | None = None,
            text_all: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
    """Symmetric NT-Xent: ½ (CE(audio → text) + CE(text → audio)), each the mean over local rows.

    - `logit_scale`: the multiplier 1/temperature (e.g. `BiEncoder.logit_scale`), not its log.
    - `same_clip_mask`: (n, N) bool, True where row i and column j share a clip (e.g. `mask_from_clip_ids(ids)`);
      those off-target cells are excluded from the softmax, the target cell (i, offset + i) always stays.
    - `audio_all`/`text_all`/`offset`: the global batch and where this rank's rows sit in it (DDP); the mean of
      the per-rank losses then equals the single-process loss on the whole batch.
    """
    n = audio_emb.shape[0]
    if text_emb.shape[0] != n:
        raise ValueError(f"audio and text batches differ: {n} vs {text_emb.shape[0]}")
    logits_a, logits_t = contrastive_logits(audio_emb, text_emb, logit_scale, audio_all, text_all)
    target = torch.arange(n, device=logits_a.device) + offset
    if same_clip_mask is not None:
        if same_clip_mask.shape != logits_a.shape:
            raise ValueError(f"same_clip_mask has shape {tuple(same_clip_mask.shape)}, "
                             f"expected {tuple(logits_a.shape)}")
        drop = same_clip_mask.to(logits_a.device).clone()
        drop[torch.arange(n, device=drop.device), target] = False
        logits_a = logits_a.masked_fill(drop, float("-inf"))
        logits_t = logits_t.masked_fill(drop, float("-inf"))
    return 0.5 * (F.cross_entropy(logits_a, target) + F.cross_entropy(logits_t, target))

"""Retrieval metrics of DCASE 2022 task 6b: one relevant clip per caption, mAP@10 and R@1/5/10.

Why ties are spelled out: equal scores happen (identical clips, an untrained or quantised model) and an undefined
tie order makes metrics flicker between runs. Here the ranking is "score descending, then clip index ascending",
both for `rank_of_target` and for `top_k` (the submission), so the metric equals what the DCASE scorer computes on
the submitted file: rank = 1 + #clips scoring strictly higher + #clips scoring equal with a smaller index.
"""
from __future__ import annotations

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(similarity: ArrayLike) -> torch.Tensor:
    sim = torch.as_tensor(similarity)
    if sim.dim() != 2:
        raise ValueError(f"similarity must be (n_captions, n_clips), got shape {tuple(sim.shape)}")
    if sim.is_floating_point() and not bool(torch.isfinite(sim).all()):
        raise ValueError("similarity contains NaN or infinite scores")
    return sim


def rank_of_target(similarity: ArrayLike, target_index: ArrayLike, chunk: int = 1024) -> torch.Tensor:
    """1-based rank of each caption's relevant clip: (n_captions,) long, ties broken by clip index."""
    sim = _as_tensor(similarity)
    target = torch.as_tensor(target_index, device=sim.device).long().view(-1)
    n_captions, n_clips = sim.shape
    if target.shape[0] != n_captions:
        raise ValueError(f"{target.shape[0]} targets for {n_captions} captions")
    if n_captions and (int(target.min()) < 0 or int(target.max()) >= n_clips):
        raise ValueError(f"target index out of range [0, {n_clips})")
    clip = torch.arange(n_clips, device=sim.device).view(1, -1)
    ranks = []
    for start in range(0, n_captions, chunk):  # bounded memory for large eval sets
        s, t = sim[start:start + chunk], target[start:start + chunk]
        score = s.gather(1, t.view(-1, 1))
        ahead = (s > score) | ((s == score) & (clip < t.view(-1, 1)))
        ranks.append(1 + ahead.sum(dim=1))
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)


def metrics_from_ranks(ranks: ArrayLike) -> dict[str, float]:
    """{"map10", "r1", "r5", "r10"} from 1-based ranks: AP@10 = 1/rank if rank ≤ 10 else 0, averaged."""
    r = torch.as_tensor(ranks).double()
    if r.numel() == 0:
        raise ValueError("no captions to score")
    ap = torch.where(r <= 10, 1.0 / r, torch.zeros_like(r))
    return {"map10": float(ap.mean()), "r1": float((r <= 1).double().mean()),
            "r5": float((r <= 5).double().mean()), "r10": float((r <= 10).double().mean())}


def retrieval_metrics(similarity: ArrayLike, target_index: ArrayLike) -> dict[str, float]:
    """similarity (n_captions, n_clips), target_index (n_captions,) → {"map10", "r1", "r5", "r10"} (floats)."""
    return metrics_from_ranks(rank_of_target(similarity, target_index))


def top_k(similarity: ArrayLike, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices (n, k') long, scores (n, k')) per row, score descending then index ascending; k' = min(k, n_clips).

    Used for DCASE submissions (fname_1..fname_10) and `retrieve`; same order as `rank_of_target`.
    """
    sim = _as_tensor(similarity)
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    scores, indices = torch.sort(sim, dim=1, descending=True, stable=True)
    k = min(k, sim.shape[1])
    return indices[:, :k], scores[:, :k]

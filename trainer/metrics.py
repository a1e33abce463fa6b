"""Retrieval metrics: DCASE 2022 task 6b (one relevant clip per caption) and DCASE 2025 task 6 (several).

AP@k, mAP@k and R@k follow the official 2022 scorer and the 2025 baseline's code. Ties are ranked by score
descending, then item index ascending, in the metrics and in `top_k` (the submission) alike, so the metrics equal
what the official scorer computes on the submitted file and never flicker between runs. Definitions and sources:
docs/evaluation.md.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray
MAP_CUTOFFS = (10, 16)
RECALL_CUTOFFS = (1, 5, 10)


def _as_tensor(similarity: ArrayLike) -> torch.Tensor:
    sim = torch.as_tensor(similarity)
    if sim.dim() != 2:
        raise ValueError(f"similarity must be (n_queries, n_items), got shape {tuple(sim.shape)}")
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


def relevant_ranks(similarity: ArrayLike, relevant: Sequence[Sequence[int]], chunk: int = 1024) -> list[np.ndarray]:
    """Per query (row), the ascending 1-based ranks of its relevant items (columns), ties by item index.

    Each (query, relevant item) pair is ranked by `rank_of_target` (comparisons, no sort), so one tie rule
    serves every metric and `top_k`.
    """
    sim = _as_tensor(similarity)
    n_queries, n_items = sim.shape
    if len(relevant) != n_queries:
        raise ValueError(f"{len(relevant)} relevance lists for {n_queries} queries")
    items = [sorted(set(int(i) for i in r)) for r in relevant]
    for q, r in enumerate(items):
        if not r:
            raise ValueError(f"query {q} has no relevant item")
        if r[0] < 0 or r[-1] >= n_items:
            raise ValueError(f"query {q}: relevant index out of range [0, {n_items})")
    query_of_pair = torch.tensor([q for q, r in enumerate(items) for _ in r], dtype=torch.long)
    item_of_pair = torch.tensor([i for r in items for i in r], dtype=torch.long)
    ranks = torch.cat([rank_of_target(sim[query_of_pair[s:s + chunk].to(sim.device)], item_of_pair[s:s + chunk])
                       for s in range(0, len(item_of_pair), chunk)]).cpu().numpy()
    bounds = np.cumsum([0] + [len(r) for r in items])
    return [np.sort(ranks[bounds[q]:bounds[q + 1]]) for q in range(n_queries)]


def average_precision_at_k(ranks: Sequence[int], n_relevant: int, k: int) -> float:
    """AP@k from the 1-based ranks of a query's relevant items (any order) and |R| (see the module docstring)."""
    hits = sorted(r for r in ranks if r <= k)
    return sum(i / r for i, r in enumerate(hits, start=1)) / n_relevant


def multi_positive_metrics(similarity: ArrayLike, relevant: Sequence[Sequence[int]], prefix: str = "",
                           map_cutoffs: Sequence[int] = MAP_CUTOFFS,
                           recall_cutoffs: Sequence[int] = RECALL_CUTOFFS) -> dict[str, float]:
    """{prefix + "map10", "map16", "r1", "r5", "r10"}: mean AP@k and R@k over queries with ≥ 1 relevant item."""
    ranks = relevant_ranks(similarity, relevant)
    if not ranks:
        raise ValueError("no queries to score")
    out = {f"{prefix}map{k}": float(np.mean([average_precision_at_k(r, len(r), k) for r in ranks]))
           for k in map_cutoffs}
    out.update({f"{prefix}r{k}": float(np.mean([r[0] <= k for r in ranks])) for k in recall_cutoffs})
    return out


def chance_average_precision(n_items: int, n_relevant: int, k: int) -> float:
    """Expected AP@k of a uniformly random ranking of n_items with n_relevant of them relevant.

    The item at rank r is relevant with probability m/n; given that, the other relevant items above it number
    (r−1)(m−1)/(n−1) on average, so E[AP@k] = (1/m) Σ_{r≤k} (m/n)·(1 + (r−1)(m−1)/(n−1))/r.
    """
    if not 1 <= n_relevant <= n_items:
        raise ValueError(f"need 1 ≤ n_relevant ≤ n_items, got {n_relevant} of {n_items}")
    spread = (n_relevant - 1) / (n_items - 1) if n_items > 1 else 0.0
    return sum((1 + (r - 1) * spread) / r for r in range(1, min(k, n_items) + 1)) / n_items


def chance_map10(n_clips: int) -> float:
    """Expected mAP@10 of a random ranking with one relevant clip among n: (1/n) Σ_{r≤min(10,n)} 1/r."""
    return chance_average_precision(n_clips, 1, 10) if n_clips > 0 else 0.0


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

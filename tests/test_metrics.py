"""mAP@10 and R@k against rankings built by hand; tie order shared by ranks and top-k."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.metrics import metrics_from_ranks, rank_of_target, retrieval_metrics, top_k


def similarity_with_ranks(ranks: list[int], n_clips: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """One row per caption whose target (clip 5) is placed at the given 1-based rank by construction."""
    rows = []
    for r in ranks:
        order = [c for c in range(n_clips) if c != 5]
        order.insert(r - 1, 5)  # clips in decreasing score order
        row = torch.empty(n_clips)
        row[torch.tensor(order)] = torch.linspace(1.0, 0.0, n_clips)
        rows.append(row)
    return torch.stack(rows), torch.full((len(ranks),), 5)


def test_hand_made_rankings() -> None:
    sim, target = similarity_with_ranks([1, 3, 11, 10, 6])
    assert rank_of_target(sim, target).tolist() == [1, 3, 11, 10, 6]
    m = retrieval_metrics(sim, target)
    assert m == pytest.approx({"map10": (1 + 1 / 3 + 0 + 1 / 10 + 1 / 6) / 5, "r1": 1 / 5, "r5": 2 / 5,
                               "r10": 4 / 5})
    assert set(m) == {"map10", "r1", "r5", "r10"} and all(isinstance(v, float) for v in m.values())


def test_numpy_input_and_two_clips_per_caption_targets() -> None:
    sim = np.array([[0.1, 0.9, 0.3], [0.8, 0.2, 0.5], [0.0, 0.1, 0.2]])
    m = retrieval_metrics(sim, np.array([1, 2, 0]))  # ranks 1, 2, 3
    assert m == pytest.approx({"map10": (1 + 0.5 + 1 / 3) / 3, "r1": 1 / 3, "r5": 1.0, "r10": 1.0})


def test_ties_rank_by_clip_index_consistently_with_top_k() -> None:
    sim = torch.tensor([[0.5, 0.5, 0.5, 0.1], [0.5, 0.5, 0.5, 0.1]])
    assert rank_of_target(sim, torch.tensor([0, 2])).tolist() == [1, 3]
    g = torch.Generator().manual_seed(0)
    sim = torch.randint(0, 4, (50, 30), generator=g).float()  # many ties
    target = torch.randint(0, 30, (50,), generator=g)
    idx, scores = top_k(sim, 30)
    positions = (idx == target[:, None]).float().argmax(dim=1) + 1
    assert torch.equal(rank_of_target(sim, target), positions)
    assert bool((scores[:, :-1] >= scores[:, 1:]).all())


def test_top_k_order_and_size() -> None:
    sim = torch.tensor([[0.2, 0.9, 0.4], [0.3, 0.3, 0.7]])
    idx, scores = top_k(sim, 2)
    assert idx.tolist() == [[1, 2], [2, 0]]
    assert torch.allclose(scores, torch.tensor([[0.9, 0.4], [0.7, 0.3]]))
    assert top_k(sim, 10)[0].shape == (2, 3)


def test_invalid_input_raises() -> None:
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="out of range"):
        rank_of_target(torch.zeros(1, 2), torch.tensor([2]))
    with pytest.raises(ValueError, match="targets"):
        rank_of_target(torch.zeros(2, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match="no captions"):
        metrics_from_ranks(torch.zeros(0))

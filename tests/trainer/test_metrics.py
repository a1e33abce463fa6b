"""mAP@10 and R@k against rankings built by hand; tie order shared by ranks and top-k."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audioret.trainer.metrics import metrics_from_ranks, rank_of_target, retrieval_metrics, top_k


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


# --- several relevant items per query (DCASE 2025) -------------------------------------------------------------

def row_with_order(order: list[int], n_items: int = 20) -> torch.Tensor:
    """One similarity row whose ranking is `order` (best first) followed by the remaining items by index."""
    full = order + [i for i in range(n_items) if i not in order]
    row = torch.empty(n_items)
    row[torch.tensor(full)] = torch.linspace(1.0, 0.0, n_items)
    return row


def baseline_ap(sim_row: torch.Tensor, relevant: list[int], k: int) -> float:
    """The DCASE 2025 baseline's rule as published (d25_t6/retrieval_module.py): 0-based ranks of the relevant
    items, sorted; Σ i/(rank+1) over those with rank < k, i = 1, 2, ...; divided by the number of relevant."""
    order = sorted(range(len(sim_row)), key=lambda j: -float(sim_row[j]))  # no ties in the rows it is used on
    ranks = sorted(order.index(j) for j in relevant)
    return sum(i / (r + 1) for i, r in enumerate(ranks, start=1) if r < k) / len(ranks)


def test_average_precision_hand_computed_one_two_three_relevant() -> None:
    from audioret.trainer.metrics import average_precision_at_k, multi_positive_metrics, relevant_ranks

    sim = torch.stack([row_with_order([4, 1, 7, 3]),  # 1 relevant (7) at rank 3: AP = 1/3
                       row_with_order([0, 9, 2, 6, 5]),  # 2 relevant (9, 5) at ranks 2, 5: (1/2 + 2/5)/2
                       row_with_order([3, 0, 1, 8] + list(range(10, 18)) + [6])])  # 3 relevant (3, 8, 6) at 1, 4, 13
    relevant = [[7], [5, 9], [6, 3, 8]]
    assert [r.tolist() for r in relevant_ranks(sim, relevant)] == [[3], [2, 5], [1, 4, 13]]
    assert average_precision_at_k([13, 1, 4], 3, 10) == pytest.approx((1 / 1 + 2 / 4) / 3)  # 13 is beyond k
    assert average_precision_at_k([13, 1, 4], 3, 16) == pytest.approx((1 / 1 + 2 / 4 + 3 / 13) / 3)
    m = multi_positive_metrics(sim, relevant)
    assert m == pytest.approx({
        "map10": (1 / 3 + (1 / 2 + 2 / 5) / 2 + (1 + 2 / 4) / 3) / 3,
        "map16": (1 / 3 + (1 / 2 + 2 / 5) / 2 + (1 + 2 / 4 + 3 / 13) / 3) / 3,
        "r1": 1 / 3, "r5": 1.0, "r10": 1.0})
    for q, rel in enumerate(relevant):  # the same numbers as the baseline's formula
        for k in (10, 16):
            assert average_precision_at_k(relevant_ranks(sim[q:q + 1], [rel])[0], len(rel), k) == pytest.approx(
                baseline_ap(sim[q], rel, k))


def test_multi_positive_ties_rank_by_item_index_like_top_k() -> None:
    from audioret.trainer.metrics import multi_positive_metrics, relevant_ranks

    sim = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1]])  # ranking 1, 0, 2, 3, 4: relevant 2 and 3 at ranks 3, 4
    assert relevant_ranks(sim, [[3, 2]])[0].tolist() == [3, 4]
    assert top_k(sim, 5)[0].tolist() == [[1, 0, 2, 3, 4]]
    assert multi_positive_metrics(sim, [[3, 2]])["map10"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    g = torch.Generator().manual_seed(1)
    sim = torch.randint(0, 3, (40, 25), generator=g).float()  # many ties
    relevant = [torch.randperm(25, generator=g)[:int(n)].tolist() for n in torch.randint(1, 5, (40,), generator=g)]
    idx, _ = top_k(sim, 25)
    for q, ranks in enumerate(relevant_ranks(sim, relevant)):
        assert ranks.tolist() == sorted(idx[q].tolist().index(j) + 1 for j in relevant[q])


def test_one_relevant_item_reduces_to_the_2022_metrics() -> None:
    from audioret.trainer.metrics import multi_positive_metrics

    g = torch.Generator().manual_seed(2)
    sim = torch.randint(0, 4, (60, 30), generator=g).float()
    target = torch.randint(0, 30, (60,), generator=g)
    m = multi_positive_metrics(sim, [[int(t)] for t in target])
    assert {k: m[k] for k in ("map10", "r1", "r5", "r10")} == pytest.approx(retrieval_metrics(sim, target))
    ranks = rank_of_target(sim, target).double()
    assert m["map16"] == pytest.approx(float(torch.where(ranks <= 16, 1 / ranks, torch.zeros_like(ranks)).mean()))


def test_chance_average_precision_equals_exhaustive_enumeration() -> None:
    import itertools

    from audioret.trainer.metrics import average_precision_at_k, chance_average_precision, chance_map10

    for n, m, k in ((5, 1, 3), (5, 2, 3), (6, 3, 4), (4, 4, 10)):
        aps = [average_precision_at_k([perm.index(j) + 1 for j in range(m)], m, k)
               for perm in itertools.permutations(range(n))]
        assert chance_average_precision(n, m, k) == pytest.approx(float(np.mean(aps)))
    assert chance_map10(24) == pytest.approx(sum(1 / r for r in range(1, 11)) / 24)


def test_multi_positive_invalid_input_raises() -> None:
    from audioret.trainer.metrics import multi_positive_metrics

    with pytest.raises(ValueError, match="no relevant"):
        multi_positive_metrics(torch.zeros(1, 3), [[]])
    with pytest.raises(ValueError, match="out of range"):
        multi_positive_metrics(torch.zeros(1, 3), [[3]])
    with pytest.raises(ValueError, match="relevance lists"):
        multi_positive_metrics(torch.zeros(2, 3), [[0]])

"""NT-Xent against the formula written out with loops, duplicate-caption masking, and the DDP decomposition."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from audioret.trainer.loss import contrastive_logits, mask_from_clip_ids, nt_xent


def embeddings(n: int, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    t = F.normalize(a + 0.8 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return a, t


def direct(a: torch.Tensor, t: torch.Tensor, scale: float, ids: list | None = None) -> float:
    """½ mean_i −log softmax_j(s·a_i·t_j)[i] + ½ mean_i −log softmax_j(s·t_i·a_j)[i], skipping j ≠ i of i's clip."""
    n = a.shape[0]
    ids = list(range(n)) if ids is None else ids
    total = 0.0
    for x, y in ((a, t), (t, a)):
        for i in range(n):
            terms = [math.exp(scale * float(x[i] @ y[j])) for j in range(n) if j == i or ids[j] != ids[i]]
            total += -(scale * float(x[i] @ y[i]) - math.log(sum(terms)))
    return total / (2 * n)


def test_nt_xent_matches_direct_formula() -> None:
    a, t = embeddings(7)
    assert math.isclose(float(nt_xent(a, t, 1 / 0.07)), direct(a, t, 1 / 0.07), rel_tol=1e-10)
    assert math.isclose(float(nt_xent(a, t, torch.tensor(3.0))), direct(a, t, 3.0), rel_tol=1e-10)
    assert not math.isclose(direct(a, t, 3.0), direct(t, a[torch.randperm(7)], 3.0), rel_tol=1e-3)


def test_logits_are_scaled_cosines_in_both_directions() -> None:
    a, t = embeddings(4)
    la, lt = contrastive_logits(a, t, 2.0)
    assert torch.allclose(la, 2.0 * a @ t.T) and torch.allclose(lt, la.T)


def test_masking_captions_of_the_same_clip() -> None:
    a, t = embeddings(6, seed=1)
    a[1] = a[0]  # two captions of clip "x": the same audio (as when a batch holds one clip twice)
    ids = ["x", "x", "y", "z", "w", "y"]
    mask = mask_from_clip_ids(ids)
    assert mask.shape == (6, 6) and bool(mask[0, 1]) and bool(mask[2, 5]) and not bool(mask[0, 2])
    masked = float(nt_xent(a, t, 10.0, mask))
    plain = float(nt_xent(a, t, 10.0))
    assert math.isclose(masked, direct(a, t, 10.0, ids), rel_tol=1e-10)
    assert masked < plain  # fewer (false) negatives in every affected denominator
    assert math.isclose(float(nt_xent(a, t, 10.0, mask_from_clip_ids(list("abcdef")))), plain, rel_tol=1e-12)
    assert torch.equal(mask_from_clip_ids(torch.tensor([3, 3, 1])), mask_from_clip_ids([3, 3, 1]))


def test_local_blocks_against_global_batch_reproduce_loss_and_gradient() -> None:
    """What trainer/loss_distributed.py relies on: ranks score local rows against gathered columns; the mean of the
    rank losses equals the single-process loss, and so does its gradient."""
    a0, t0 = embeddings(8, seed=2)
    ids = [0, 1, 1, 2, 3, 4, 4, 5]
    a, t = a0.clone().requires_grad_(), t0.clone().requires_grad_()
    full = nt_xent(a, t, 5.0, mask_from_clip_ids(ids))
    full.backward()
    grads_full = a.grad.clone(), t.grad.clone()
    a.grad = t.grad = None
    losses = []
    for rank, rows in enumerate((slice(0, 4), slice(4, 8))):
        losses.append(nt_xent(a[rows], t[rows], 5.0, mask_from_clip_ids(ids[rows], ids), audio_all=a, text_all=t,
                              offset=4 * rank))
    total = sum(losses) / 2
    total.backward()
    assert math.isclose(float(total.detach()), float(full.detach()), rel_tol=1e-12)
    assert torch.allclose(a.grad, grads_full[0]) and torch.allclose(t.grad, grads_full[1])


def test_learned_scale_gets_a_gradient_and_bad_shapes_raise() -> None:
    a, t = embeddings(5)
    log_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    nt_xent(a, t, log_scale.exp()).backward()
    assert log_scale.grad is not None and float(log_scale.grad) != 0.0
    with pytest.raises(ValueError, match="differ"):
        nt_xent(a, t[:4], 1.0)
    with pytest.raises(ValueError, match="same_clip_mask"):
        nt_xent(a, t, 1.0, torch.zeros(5, 4, dtype=torch.bool))

"""The contrastive loss of a distributed run, next to the plain one (trainer/loss.py).

Each rank all-gathers the audio and text embeddings with gradient and scores its local rows against the global
batch (open_clip's `gather_with_grad` + local loss). The gather's backward sums every rank's gradient for a slot
and DDP averages over ranks, so the gradient equals one process on the whole batch: the loss is neither divided
nor multiplied by the world size (docs/training.md, tests/trainer/test_distributed.py). With one process it is the plain
loss.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from audioret.trainer.distributed import current
from audioret.trainer.loss import mask_from_clip_ids, nt_xent


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slot.

    Written out (all_reduce of the full gradient, then the own slice) instead of relying on
    `torch.distributed.nn.functional.all_gather`, whose backward takes different code paths per backend; this
    one is the same on gloo and NCCL, and the cost (W·B×D floats per step) is negligible next to the encoders.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.batch = rank, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.batch:(ctx.rank + 1) * ctx.batch]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) per rank → (W·B, ...) in rank order, differentiable; identity for one process.

    Every rank must pass the same B (the sampler guarantees it).
    """
    if not current().enabled:
        return x
    return _GatherWithGrad.apply(x)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """all_gather of a tensor that needs no gradient (e.g. clip indices for the duplicate mask)."""
    if not current().enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def local_block_loss(audio_local: torch.Tensor, text_local: torch.Tensor, audio_all: torch.Tensor,
                     text_all: torch.Tensor, logit_scale: torch.Tensor | float, offset: int,
                     clip_local: torch.Tensor | None = None,
                     clip_all: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric NT-Xent of B local rows against N global columns; the target of row i is column offset + i.

    With offset 0 and local == all this is exactly the single-process N×N loss. `clip_*` (clip indices) mask
    other captions of the same clip out of the negatives (DESIGN: they are not negatives of each other).
    The loss itself is trainer.loss.nt_xent; this only supplies the global columns.
    """
    mask = mask_from_clip_ids(clip_local, clip_all) if clip_local is not None and clip_all is not None else None
    return nt_xent(audio_local, text_local, logit_scale, mask, audio_all=audio_all, text_all=text_all,
                   offset=offset)


def distributed_nt_xent(audio_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                        clip_index: torch.Tensor | None = None) -> torch.Tensor:
    """This rank's contrastive loss against the global batch (see the module docstring for the scaling).

    Use it *unscaled* with DDP (gradient averaging). With one process it equals the plain N×N symmetric loss.
    """
    info = current()
    audio_all, text_all = gather_with_grad(audio_emb), gather_with_grad(text_emb)
    clip_all = gather_no_grad(clip_index) if clip_index is not None else None
    return local_block_loss(audio_emb, text_emb, audio_all, text_all, logit_scale,
                            info.rank * audio_emb.shape[0], clip_index, clip_all)


def contrastive_loss(audio_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                     clip_index: torch.Tensor) -> torch.Tensor:
    """The loop's one loss call: the global-batch loss in a distributed run, else the plain NT-Xent.

    `clip_index` (one int per row) keeps captions of the same clip from being each other's negatives.
    """
    if current().enabled:
        return distributed_nt_xent(audio_emb, text_emb, logit_scale, clip_index)
    return nt_xent(audio_emb, text_emb, logit_scale, mask_from_clip_ids(clip_index))

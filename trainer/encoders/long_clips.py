"""Whole clips of any length in bounded memory: how evaluation, `predict` and `retrieve --audio-dir` embed them.

Why: padding a batch to its longest clip made memory grow with that clip (six short clips and a 10-minute WAV:
5.4 GB). Each audio encoder's `long_inputs` says how it takes long clips: in near-equal pieces whose pooled
features are averaged (CNN10; PaSST, exactly), cut after the frames it reads (AST), or whole (CLAP). Clips up to
the chunk are embedded exactly as before. The rules per encoder and the memory measured: docs/evaluation.md.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import numpy as np
import torch
from torch import nn

DEFAULT_BUDGET_FRAMES = 3001  # per batch slot of an encoder without chunks: 30 s at 100 frames/s
PIECE_BUDGET_FRAMES = 1000  # per batch slot for the pieces of long clips: 10 s at 100 frames/s


@dataclass(frozen=True)
class LongInputs:
    """How an audio encoder takes clips longer than it embeds in one piece (module docstring)."""

    chunk_frames: int | None = None
    align: int = 1
    read_frames: int | None = None

    def __post_init__(self) -> None:
        if self.chunk_frames is not None and (self.chunk_frames < 1 or self.chunk_frames % self.align):
            raise ValueError(f"chunk_frames {self.chunk_frames} must be a positive multiple of align {self.align}")

    @property
    def budget_frames(self) -> int:
        return self.chunk_frames or DEFAULT_BUDGET_FRAMES


WHOLE = LongInputs()


def pieces(length: int, rule: LongInputs) -> list[tuple[int, int]]:
    """(start, stop) frame ranges a clip of `length` frames is embedded in: one range, or near-equal pieces of at
    most `rule.chunk_frames` frames cut at multiples of `rule.align` (module docstring)."""
    if rule.read_frames is not None:
        length = min(length, rule.read_frames)
    chunk = rule.chunk_frames
    if chunk is None or length <= chunk:
        return [(0, length)]
    n, units = math.ceil(length / chunk), math.ceil(length / rule.align)  # units ≤ n × chunk / align
    bounds = [(i * units // n) * rule.align for i in range(n)] + [length]
    return list(zip(bounds[:-1], bounds[1:], strict=False))


def length_batches(lengths: Sequence[int], batch_size: int, budget_frames: int,
                   padded: Sequence[int] | None = None) -> list[np.ndarray]:
    """Indices into `lengths`, longest first (stable), cut into batches of at most `batch_size` items and at
    most batch_size × budget_frames padded frames (always at least one item); `padded`: the frames each item
    takes in a batch when fewer than its length (default: its length)."""
    order = np.argsort([-int(n) for n in lengths], kind="stable")
    padded = lengths if padded is None else padded
    limit = batch_size * budget_frames
    batches, start = [], 0
    while start < len(order):
        longest = max(int(padded[order[start]]), 1)
        stop = min(start + batch_size, len(order), start + max(1, limit // longest))
        batches.append(order[start:stop])
        start = stop
    return batches


Pad = Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]]


@torch.no_grad()
def embed_clips(encoder: nn.Module, arrays: Sequence[np.ndarray], device: torch.device, batch_size: int, pad: Pad,
                precision: Callable[[], ContextManager] = contextlib.nullcontext) -> torch.Tensor:
    """(n, embed_dim) float32 CPU outputs of `encoder` (not normalised) for whole clips of any length, in input
    order. `pad` stacks (T_i, bins) float32 arrays into a padded batch and lengths; `precision` is the autocast
    context. The encoder should be in eval mode (the caller's job: a model's other towers share the switch)."""
    rule: LongInputs = getattr(encoder, "long_inputs", WHOLE)
    lengths = [pieces(a.shape[0], rule) for a in arrays]
    out = torch.empty(len(arrays), encoder.embed_dim)
    whole = [i for i, p in enumerate(lengths) if len(p) == 1]
    for batch in length_batches([arrays[i].shape[0] for i in whole], batch_size, rule.budget_frames,
                                [lengths[i][0][1] for i in whole]):
        idx = [whole[int(b)] for b in batch]
        out[torch.tensor(idx)] = _run(encoder, [arrays[i][:lengths[i][0][1]] for i in idx], device, pad, precision)
    long = [i for i, p in enumerate(lengths) if len(p) > 1]
    if long:
        pooled = _pooled_long(encoder, arrays, long, lengths, device, batch_size, rule, pad, precision)
        for s in range(0, len(long), batch_size):
            with precision():
                emb = encoder.head(pooled[s:s + batch_size].to(device))
            out[torch.tensor(long[s:s + batch_size])] = emb.float().cpu()
    return out


def _run(encoder: nn.Module, clips: list[np.ndarray], device: torch.device, pad: Pad,
         precision: Callable[[], ContextManager], pooled: bool = False) -> torch.Tensor:
    x, n = pad([np.asarray(c, dtype=np.float32) for c in clips])
    with precision():
        fn = encoder.pooled if pooled else encoder
        return fn(torch.from_numpy(x).to(device), torch.from_numpy(n).to(device)).float().cpu()


def _pooled_long(encoder: nn.Module, arrays: Sequence[np.ndarray], long: list[int], ranges: list, device,
                 batch_size: int, rule: LongInputs, pad: Pad, precision) -> torch.Tensor:
    """(len(long), pooled dim): per long clip, the mean of its pieces' `encoder.pooled` vectors weighted by the
    `align`-units each piece covers (accumulated in float64, so the batch plan hardly matters)."""
    plan = [(k, s, e) for k, i in enumerate(long) for s, e in ranges[i]]
    sums: torch.Tensor | None = None
    weights = torch.zeros(len(long), 1)
    for batch in length_batches([e - s for _, s, e in plan], batch_size, PIECE_BUDGET_FRAMES):
        parts = [plan[int(b)] for b in batch]
        vectors = _run(encoder, [arrays[long[k]][s:e] for k, s, e in parts], device, pad, precision, pooled=True)
        if sums is None:
            sums = torch.zeros(len(long), vectors.shape[1], dtype=torch.float64)
        for (k, s, e), v in zip(parts, vectors, strict=False):
            w = math.ceil((e - s) / rule.align)
            sums[k] += w * v.double()
            weights[k] += w
    assert sums is not None
    return (sums / weights.double()).float()

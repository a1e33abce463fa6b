"""CNN10 audio encoder (PANNs, Kong et al. 2020), as in Primus & Widmer (DCASE 2022 task 6b).

Attribute names follow the PANNs Cnn10 state dict so the AudioSet checkpoint `Cnn10_mAP=0.380.pth` loads as is.
Padded frames are zeroed before every convolution and masked out of the time pooling, so a clip's embedding does
not depend on how much padding its batch needed (exactly in eval mode; docs/training.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audioret.cache.feature_contract import DB_SCALE
from audioret.trainer.augment import spec_augment, valid_mask
from audioret.trainer.encoders.loading import copy_matching, read_state_dict
from audioret.trainer.encoders.long_clips import LongInputs

CNN10_CHANNELS = (64, 128, 256, 512)
N_POOLS = len(CNN10_CHANNELS)  # each block halves time and frequency
PANNS_PREFIXES = ("bn0.",) + tuple(f"conv_block{i}." for i in range(1, N_POOLS + 1))
CHUNK_FRAMES = 3001  # 30 s at 100 frames/s plus the centred STFT's last frame: every Clotho clip in one piece


class ConvBlock(nn.Module):
    """PANNs ConvBlock: 2 × (3×3 conv without bias, BN, ReLU), then 2×2 average pooling; masks padded frames."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, F), mask (B, 1, T, 1) float; returns (B, C', T//2, F//2) (caller re-masks)."""
        x = F.relu(self.bn1(self.conv1(x * mask))) * mask
        x = F.relu(self.bn2(self.conv2(x))) * mask
        return F.avg_pool2d(x, kernel_size=2)


class AudioEncoder(nn.Module):
    """bn0 over mel bins → SpecAugment (train only) → CNN10 → masked (max + mean) time pooling → FC 2048 → FC out.

    `width` multiplies the CNN10 channels (e.g. 0.25 for CPU demos); PANNs weights only fit width 1. Dropout is the
    PANNs one (0.2 after each block, 0.5 before the first FC layer). `projection="linear"` replaces the two FC
    layers with one (fc2 straight from the pooled channels), the DCASE 2025 baseline's head.
    """

    scale = DB_SCALE  # input: PANNs log-mel in dB, padding at the −100 dB floor
    long_inputs = LongInputs(chunk_frames=CHUNK_FRAMES)  # clips > 30 s: embedded in pieces (long_clips.py)

    def __init__(self, n_mels: int = 64, width: float = 1.0, embed_dim: int = 1024, n_t: int = 0, w_t: int = 0,
                 n_f: int = 0, w_f: int = 0, hidden: int = 2048, block_dropout: float = 0.2,
                 head_dropout: float = 0.5, projection: str = "mlp") -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"audio width must be > 0, got {width}")
        self.n_mels, self.width = n_mels, width
        self.n_t, self.w_t, self.n_f, self.w_f = n_t, w_t, n_f, w_f
        self.block_dropout, self.head_dropout = block_dropout, head_dropout
        channels = [max(1, round(c * width)) for c in CNN10_CHANNELS]
        self.bn0 = nn.BatchNorm2d(n_mels)
        ins = [1] + channels[:-1]
        for i, (cin, cout) in enumerate(zip(ins, channels, strict=False), start=1):
            self.add_module(f"conv_block{i}", ConvBlock(cin, cout))
        if projection not in ("mlp", "linear"):
            raise ValueError(f"projection must be mlp or linear, got {projection!r}")
        self.projection = projection
        self.fc1 = nn.Linear(channels[-1], hidden) if projection == "mlp" else None
        self.fc2 = nn.Linear(hidden if projection == "mlp" else channels[-1], embed_dim)
        self.embed_dim = embed_dim

    def blocks(self) -> list[ConvBlock]:
        return [getattr(self, f"conv_block{i}") for i in range(1, N_POOLS + 1)]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """x (B, T, n_mels) dB log-mels (padding anywhere after `lengths`), lengths (B,) long → (B, embed_dim).

        `generator` drives SpecAugment (train mode only); None uses torch's global RNG.
        """
        return self.head(self.pooled(x, lengths, generator))

    def pooled(self, x: torch.Tensor, lengths: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, channels) max + mean time pooling of the last block: what `head` projects, and what a clip
        longer than `long_inputs.chunk_frames` averages over its pieces (trainer/encoders/long_clips.py)."""
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise ValueError(f"expected (batch, frames, {self.n_mels}) log-mels, got {tuple(x.shape)}")
        lengths = lengths.to(x.device).clamp(min=1, max=x.shape[1])
        x = self._bn0(x, lengths)
        if self.training:
            x = spec_augment(x, self.n_t, self.w_t, self.n_f, self.w_f, generator, lengths=lengths)
        min_frames = 2 ** N_POOLS  # a shorter input would pool to zero frames; the extra frames are masked
        if x.shape[1] < min_frames:
            x = F.pad(x, (0, 0, 0, min_frames - x.shape[1]))
        x = x.unsqueeze(1)  # (B, 1, T, F)
        for block in self.blocks():
            mask = valid_mask(lengths, x.shape[2]).to(x.dtype)[:, None, :, None]
            x = F.dropout(block(x, mask), p=self.block_dropout, training=self.training)
            lengths = torch.div(lengths, 2, rounding_mode="floor")
        x = x.mean(dim=3)  # over frequency → (B, C, T')
        keep = valid_mask(lengths.clamp(min=1), x.shape[2]).unsqueeze(1)  # < 16 frames: first frame only
        x_max = x.masked_fill(~keep, float("-inf")).amax(dim=2)
        x_mean = (x * keep).sum(dim=2) / keep.sum(dim=2)
        return x_max + x_mean

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, channels) pooled features → (B, embed_dim): dropout, then FC 2048 ReLU FC (or one FC)."""
        x = F.dropout(pooled, p=self.head_dropout, training=self.training)
        return self.fc2(F.relu(self.fc1(x)) if self.fc1 is not None else x)

    def _bn0(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """BatchNorm over mel bins. In training the batch statistics use valid frames only: floor padding
        (−100 dB) would otherwise drag the mean and inflate the variance of padded batches. Eval mode (and the
        state dict) is plain `nn.BatchNorm2d`, so PANNs' bn0 loads as is."""
        bn = self.bn0
        if not (self.training and bn.track_running_stats):
            return bn(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
        keep = valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        n = keep.sum()
        mean = (x * keep).sum(dim=(0, 1)) / n
        var = (((x - mean) * keep) ** 2).sum(dim=(0, 1)) / n
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), momentum)
            unbiased = var.detach() * n / (n - 1).clamp(min=1)
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), momentum)
        return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias

    def load_checkpoint(self, path: str | Path, apply: bool = True) -> dict[str, Any]:
        """Load bn0 and the conv blocks from a PANNs Cnn10 checkpoint ({"model": state_dict} or a bare one).

        Returns {"source", "loaded", "missing", "unexpected", "mismatched"}: keys copied; model keys of bn0/conv
        blocks absent from the file (num_batches_tracked ignored); file keys not used (PANNs' STFT, fc1,
        fc_audioset, ...); and (key, file shape, model shape) triples skipped. Raises ModelLoadError when the file
        is missing or unreadable or nothing fits, and ValueError for width != 1 (the channel counts cannot match).
        `apply=False` only checks (trainer/config.py `check_audio_checkpoint`).
        """
        path = Path(path)
        state = read_state_dict(path)  # "missing" first, whatever the width: it is the first thing to fix
        if self.width != 1:
            raise ValueError(f"{path}: PANNs weights need audio width 1, this encoder has width {self.width}")
        expected = {k: k for k in self.state_dict() if k.startswith(PANNS_PREFIXES)}
        return copy_matching(self, state, expected, path, apply,
                             "no CNN10 keys (bn0.*, conv_block*.*) match this model")

"""PaSST-S audio encoder (Koutini et al., Interspeech 2022) as the DCASE 2025 task 6 baseline uses it, in plain torch.

Written from hear21passt's model and the baseline's use of it, so trainer/ needs neither timm nor hear21passt.
The embedding is the mean of the cls and distillation outputs; structured patchout and SpecAugment run in training
only, drawn from the `generator` passed to forward (resumes are exact); a clip longer than a segment is averaged
over the segments it covers (long clips in 30-s pieces: long_clips.py). Details, differences from the baseline:
docs/training.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audioret.cache.feature_contract import PASST_SCALE
from audioret.trainer.augment import spec_augment, valid_mask
from audioret.trainer.encoders import feature_spec
from audioret.trainer.encoders.loading import copy_matching, read_state_dict
from audioret.trainer.encoders.long_clips import LongInputs
from audioret.trainer.encoders.text import projection_head

PATCH = 16
HEAD_WIDTH = 64  # channels per attention head: PaSST-S has 768 / 12
STRIDES = (10, 16)  # 10: passt-s-f128-p16-s10-ap.476-swa.pt; 16: passt-s-f128-p16-s16-ap.468.pt
POSITION_FRAMES = 1000  # 10 s at 100 frames/s: the time positions PaSST-S was trained with (99 or 62 columns)
MASK_VALUE = (0.0 + 4.5) / 5.0  # AugmentMelSTFT's mask (log-mel 0) after its normalisation
CHUNK_SEGMENTS = 3  # segments per piece of a long clip: the baseline's 30 s (the same embedding for any length)


def patch_grid(n_bins: int, frames: int, stride: int) -> tuple[int, int]:
    """(rows, columns) of 16×16 patches the conv makes of an (n_bins, frames) mel."""
    return (n_bins - PATCH) // stride + 1, (frames - PATCH) // stride + 1


def segment_frames(segment_seconds: float) -> int:
    spec = feature_spec("passt")
    return int(round(segment_seconds * spec.sample_rate / spec.hop_length))


def passt_config_problem(cfg: Any) -> str | None:
    """What is wrong with a passt config's size, stride, segment and patchout keys (None: nothing), so a run
    fails at validation instead of inside the first forward pass."""
    if cfg.passt_width % HEAD_WIDTH:
        return (f"config key 'passt_width': {cfg.passt_width} is not a multiple of {HEAD_WIDTH} (one attention head "
                f"per {HEAD_WIDTH} channels; PaSST-S: 768 = 12 heads)")
    if cfg.passt_stride not in STRIDES:
        return f"config key 'passt_stride': {cfg.passt_stride} is not one of {', '.join(map(str, STRIDES))}"
    n_bins, frames = feature_spec("passt").n_mels, segment_frames(cfg.segment_seconds)
    if frames < PATCH:
        return f"config key 'segment_seconds': {cfg.segment_seconds:g} s is shorter than one {PATCH}-frame patch"
    rows, cols = patch_grid(n_bins, frames, cfg.passt_stride)
    positions = patch_grid(n_bins, POSITION_FRAMES, cfg.passt_stride)[1]
    if cols > positions:
        return (f"config key 'segment_seconds': {cfg.segment_seconds:g} s is {cols} patch columns, PaSST's time "
                f"positions cover {positions} (10 s)")
    if cfg.patchout_t >= cols:
        return (f"config key 'patchout_t': {cfg.patchout_t} would drop all {cols} patch columns of a "
                f"{cfg.segment_seconds:g}-s segment")
    if cfg.patchout_f >= rows:
        return f"config key 'patchout_f': {cfg.patchout_f} would drop all {rows} patch rows"
    return None


class Attention(nn.Module):
    """Multi-head self-attention with one qkv projection (timm's ViT layout: `qkv`, `proj`)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √d) v, as hear21passt computes it
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PaSST(nn.Module):
    """The PaSST transformer on (N, 1, n_bins, frames) mels → (N, width) embeddings (mean of cls and dist outputs).

    Attribute names are hear21passt's (`patch_embed.proj`, `cls_token`, `dist_token`, `new_pos_embed`,
    `freq_new_pos_embed`, `time_new_pos_embed`, `blocks.i.*`, `norm`), so its checkpoints load key for key; its
    classification heads (`head.*`, `head_dist.*`) are not built.
    """

    def __init__(self, n_bins: int = 128, width: int = 768, depth: int = 12, stride: int = 10) -> None:
        super().__init__()
        if width % HEAD_WIDTH:
            raise ValueError(f"PaSST width must be a multiple of {HEAD_WIDTH}, got {width}")
        self.width, self.stride = width, stride
        rows, cols = patch_grid(n_bins, POSITION_FRAMES, stride)
        self.patch_embed = nn.ModuleDict({"proj": nn.Conv2d(1, width, kernel_size=PATCH, stride=stride)})
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, width))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, width))  # cls and dist tokens
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, width, rows, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, width, 1, cols))
        self.blocks = nn.Sequential(*[Block(width, width // HEAD_WIDTH) for _ in range(depth)])
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        """hear21passt's random init (truncated normal, std 0.02; zero biases); pretrained weights replace it."""
        for p in (self.cls_token, self.dist_token, self.new_pos_embed, self.freq_new_pos_embed,
                  self.time_new_pos_embed):
            nn.init.trunc_normal_(p, std=0.02, a=-2.0, b=2.0)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, patchout_t: int = 0, patchout_f: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.patch_embed["proj"](x)  # (N, width, rows, cols)
        x = x + self.time_new_pos_embed[:, :, :, :x.shape[-1]] + self.freq_new_pos_embed
        if self.training and patchout_t:
            x = x[:, :, :, _keep(x.shape[3], patchout_t, generator, x.device)]
        if self.training and patchout_f:
            x = x[:, :, _keep(x.shape[2], patchout_f, generator, x.device), :]
        x = x.flatten(2).transpose(1, 2)  # (N, patches, width), frequency-major as hear21passt flattens
        tokens = torch.cat([self.cls_token, self.dist_token], dim=1) + self.new_pos_embed
        x = torch.cat([tokens.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.norm(self.blocks(x))
        return (x[:, 0] + x[:, 1]) / 2


def _keep(n: int, drop: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Sorted indices of the n - drop patch rows/columns kept: a random permutation's first n - drop, as
    hear21passt draws them (with torch's global RNG there, `generator` here)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randperm(n, generator=generator, device=gen_device)[:n - drop].sort().values.to(device)


class PasstEncoder(nn.Module):
    """Segments of the cached PaSST mel → PaSST → mean over the segments each clip covers → projection.

    `projection` is trainer/encoders/text.py's `projection_head` ("linear": the baseline's Linear(768, 1024)).
    `width`/`depth` shrink the transformer for CPU tests and demos; PaSST-S checkpoints need 768 / 12.
    """

    scale = PASST_SCALE  # input: the PaSST mel, padding at its silence value (ln 1e-5 + 4.5) / 5
    long_inputs: LongInputs  # pieces of CHUNK_SEGMENTS segments for long clips (trainer/encoders/long_clips.py)

    def __init__(self, n_mels: int = 128, width: int = 768, depth: int = 12, stride: int = 10,
                 embed_dim: int = 1024, projection: str = "linear", segment_frames: int = POSITION_FRAMES,
                 patchout_t: int = 15, patchout_f: int = 2, n_t: int = 0, w_t: int = 0, n_f: int = 0,
                 w_f: int = 0) -> None:
        super().__init__()
        self.n_mels, self.embed_dim, self.segment_frames = n_mels, embed_dim, segment_frames
        self.patchout_t, self.patchout_f = patchout_t, patchout_f
        self.n_t, self.w_t, self.n_f, self.w_f = n_t, w_t, n_f, w_f
        self.passt = PaSST(n_mels, width, depth, stride)
        self.long_inputs = LongInputs(chunk_frames=CHUNK_SEGMENTS * segment_frames, align=segment_frames)
        self.proj = projection_head(projection, width, embed_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """x (B, T, n_mels) PaSST mels (anything after `lengths` is ignored), lengths (B,) → (B, embed_dim).

        `generator` drives SpecAugment and patchout (train mode only); None uses torch's global RNG.
        """
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise ValueError(f"expected (batch, frames, {self.n_mels}) PaSST mels, got {tuple(x.shape)}")
        return self.head(self.pooled(x, lengths, generator))

    def pooled(self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, width) mean of the PaSST outputs of the segments each clip covers: what `head` projects, and what
        a clip longer than `long_inputs.chunk_frames` averages over its pieces, weighted by their segments
        (trainer/encoders/long_clips.py)."""
        lengths = lengths.to(x.device).clamp(min=1, max=x.shape[1])
        if self.training:
            x = spec_augment(x, self.n_t, self.w_t, self.n_f, self.w_f, generator, lengths=lengths,
                             fill=MASK_VALUE)
        # Silence after each clip, whatever the batch padded with (and where frequency stripes reached).
        x = x.masked_fill(~valid_mask(lengths, x.shape[1]).unsqueeze(-1), self.scale.floor)
        segments, covered = self._segments(x, lengths)
        emb = self.passt(segments.transpose(1, 2).unsqueeze(1), self.patchout_t, self.patchout_f, generator)
        # Mean over each clip's segments without scatter-adds (atomic on CUDA, hence not bit-exact run to run):
        # every slot is written once, then summed in a fixed order.
        slots = emb.new_zeros(*covered.shape, emb.shape[-1])
        slots[covered] = emb
        return slots.sum(dim=1) / covered.sum(dim=1, keepdim=True).to(emb.dtype)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, width) pooled segments → (B, embed_dim): the projection."""
        return self.proj(pooled)

    def _segments(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, segment_frames, n_mels) segments every clip covers, clip by clip, padded with silence; and the
        (B, S) mask of which segment slots they fill."""
        seg = self.segment_frames
        n_segments = torch.div(lengths + seg - 1, seg, rounding_mode="floor")  # ≥ 1: lengths ≥ 1
        s = int(n_segments.max())
        x = x[:, :s * seg]
        x = F.pad(x, (0, 0, 0, s * seg - x.shape[1]), value=self.scale.floor)
        covered = torch.arange(s, device=x.device).unsqueeze(0) < n_segments.unsqueeze(1)
        return x.view(x.shape[0], s, seg, self.n_mels)[covered], covered

    def load_checkpoint(self, path: str | Path, apply: bool = True) -> dict[str, Any]:
        """Load the transformer from a PaSST state dict (hear21passt's keys, e.g. the public
        `passt-s-f128-p16-s10-ap.476-swa.pt`; {"model": ...} or "module." prefixes are unwrapped), weights only.

        Returns {"source", "loaded", "missing", "unexpected", "mismatched"} in the file's key names: the
        classification heads (`head.*`, `head_dist.*`) come back as unexpected, the projection stays random.
        Raises ModelLoadError (one line) when the file cannot be read or no key fits. `apply=False` only checks.
        """
        state = read_state_dict(Path(path))
        expected = {k.removeprefix("passt."): k for k in self.state_dict() if k.startswith("passt.")}
        return copy_matching(self, state, expected, path, apply,
                             "no PaSST keys (patch_embed.*, blocks.*, *_pos_embed, ...) match this model")


def build_passt_encoder(cfg: Any, n_bins: int) -> PasstEncoder:
    """The encoder a TrainConfig describes (random weights; `audio_checkpoint` is loaded by the training loop)."""
    problem = passt_config_problem(cfg)
    if problem:
        raise ValueError(problem)
    return PasstEncoder(n_mels=n_bins, width=cfg.passt_width, depth=cfg.passt_depth, stride=cfg.passt_stride,
                        embed_dim=cfg.embed_dim, projection=cfg.projection,
                        segment_frames=segment_frames(cfg.segment_seconds), patchout_t=cfg.patchout_t,
                        patchout_f=cfg.patchout_f, n_t=cfg.n_t, w_t=cfg.w_t, n_f=cfg.n_f, w_f=cfg.w_f)


"""What a Hugging Face feature extractor does at batching time, redone in torch on the cached per-clip features.

`prep audio --features hf:<name>` caches what the extractor computes per clip before anything that depends on the
batch or on chance; the rest runs here, per batch, from the same extractor's settings, so the model
sees what the extractor would have handed it: AST's padding and normalisation, CLAP's fusion, truncation and
repetition. Training draws from the caller's generator; evaluation is deterministic (no random
is_longer stand-in). Per case and how exact: docs/training.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from audioret.cache.feature_contract import CLAP_SCALE
from audioret.trainer.augment import valid_mask

CLAP_PADDINGS = ("repeatpad", "repeat", "pad")


@dataclass(frozen=True)
class ASTBatching:
    """`ASTFeatureExtractor`'s batch-time steps: pad with `pad_value` / truncate to `max_length`, normalise."""

    max_length: int
    pad_value: float
    mean: float
    std: float
    normalize: bool

    @classmethod
    def from_extractor(cls, extractor: Any) -> "ASTBatching":
        return cls(int(extractor.max_length), float(extractor.padding_value), float(extractor.mean),
                   float(extractor.std), bool(extractor.do_normalize))

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, bins) cached fbank padded after `lengths` → input_values (B, max_length, bins) float32."""
        x = x.float()
        keep = valid_mask(lengths.to(x.device), x.shape[1]).unsqueeze(-1)
        x = torch.where(keep, x, torch.full_like(x, self.pad_value))[:, :self.max_length]
        x = F.pad(x, (0, 0, 0, self.max_length - x.shape[1]), value=self.pad_value)
        return (x - self.mean) / (self.std * 2) if self.normalize else x


def fusion_thirds(total: int, chunk: int) -> list[tuple[int, int]]:
    """The three inclusive ranges of crop starts CLAP's fusion draws from: `np.array_split(range(0, total − chunk
    + 1), 3)`, an empty second or third part replaced by [0] (`ClapFeatureExtractor._random_mel_fusion`)."""
    q, r = divmod(total - chunk + 1, 3)
    out, lo = [], 0
    for i in range(3):
        size = q + (i < r)
        out.append((lo, lo + size - 1) if size else (0, 0))
        lo += size
    return out


def pick(lo: int, hi: int, draw: float | None) -> int:
    """A start in [lo, hi]: uniform from `draw` ∈ [0, 1) (as np.random.choice over the range), or the middle."""
    if draw is None:
        return (lo + hi) // 2
    return lo + min(int(draw * (hi - lo + 1)), hi - lo)


def repeat_index(total: int, chunk: int, padding: str) -> torch.Tensor:
    """(chunk,) frame indices into a clip of `total` < `chunk` frames, −1 where the padded waveform is silent.

    The extractor repeats the waveform int(max_length / n) times ("repeatpad", then zeros), n + 1 times cut to
    max_length ("repeat"), or not at all ("pad"). A clip of n samples has total = 1 + n // hop frames, so one copy
    lasts n / hop ∈ [total − 1, total) frames: taken as total − 0.5, each output frame reads the nearest frame."""
    period = total - 0.5
    frames = torch.arange(chunk, dtype=torch.float64)
    copy = torch.floor(frames / period)
    index = torch.round(frames - copy * period).long().clamp(max=total - 1)
    if padding == "pad":
        copies = 1
    elif padding == "repeatpad":
        copies = max(1, int((chunk - 1) / period))
    else:  # "repeat": never silent
        return index
    return torch.where(copy < copies, index, torch.full_like(index, -1))


@dataclass(frozen=True)
class ClapBatching:
    """`ClapFeatureExtractor`'s batch-time steps (module docstring): `input_features` (B, 4 | 1, chunk, bins) and
    `is_longer` (B, 1) from cached dB log-mels."""

    fusion: bool
    padding: str
    chunk: int
    floor: float = CLAP_SCALE.floor  # the dB of a zero-padded waveform: power_to_db's 1e-10 floor

    @classmethod
    def from_extractor(cls, extractor: Any) -> "ClapBatching":
        if extractor.truncation not in ("fusion", "rand_trunc") or extractor.padding not in CLAP_PADDINGS:
            raise ValueError(f"ClapFeatureExtractor truncation={extractor.truncation!r} padding="
                             f"{extractor.padding!r} is not one the extractor implements")
        return cls(extractor.truncation == "fusion", extractor.padding,
                   int(extractor.nb_max_samples) // int(extractor.hop_length) + 1)

    def clip(self, mel: torch.Tensor, draws: list[float] | None) -> tuple[torch.Tensor, bool]:
        """One clip's (T, bins) mel → its (4 | 1, chunk, bins) input and is_longer; `draws` (3 in [0, 1)) place
        the crops (None: the middle of each range)."""
        total = mel.shape[0]
        if total > self.chunk:
            if self.fusion:
                starts = [pick(lo, hi, None if draws is None else draws[i])
                          for i, (lo, hi) in enumerate(fusion_thirds(total, self.chunk))]
                shrunk = F.interpolate(mel[None, None], size=(self.chunk, mel.shape[1]), mode="bilinear",
                                       align_corners=False)[0, 0]
                return torch.stack([shrunk] + [mel[s:s + self.chunk] for s in starts]), True
            s = pick(0, total - self.chunk, None if draws is None else draws[0])
            return mel[None, s:s + self.chunk], True
        if total < self.chunk:
            index = repeat_index(total, self.chunk, self.padding).to(mel.device)
            silent = torch.full_like(mel[:1], self.floor).expand(self.chunk, -1)
            mel = torch.where((index >= 0).unsqueeze(1), mel[index.clamp(min=0)], silent)
        return (mel.expand(4, -1, -1) if self.fusion else mel[None]), False

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None,
                 training: bool = False, draws: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, bins) cached dB log-mels padded after `lengths` → (input_features, is_longer).

        Training draws crop starts and the is_longer stand-in from `generator` (None: torch's global RNG), one
        (B, 4) draw per batch (a single device → host copy); `draws` gives them explicitly (tests replaying the
        extractor's numpy draws). Evaluation without `draws` is deterministic (module docstring)."""
        x = x.float()
        b = x.shape[0]
        lengths = lengths.to("cpu").clamp(min=1, max=x.shape[1]).tolist()
        if draws is None and training:
            device = generator.device if generator is not None else x.device
            draws = torch.rand((b, 4), generator=generator, device=device)
        host = None if draws is None else draws.to("cpu", torch.float64).tolist()
        inputs, longer = zip(*(self.clip(x[i, :n], None if host is None else host[i][:3])
                               for i, n in enumerate(lengths)), strict=False)
        is_longer = torch.tensor(longer, dtype=torch.bool, device=x.device).unsqueeze(1)
        if self.fusion and host is not None and not any(longer):
            is_longer[min(int(host[0][3] * b), b - 1)] = True  # the extractor's stand-in, drawn
        return torch.stack(inputs), is_longer

"""Audio and text encoders, one file each, and the registry that picks them by the config's name.

The contract every audio encoder keeps, so the loop, evaluation and augmentations need not know which one runs:
`forward(x, lengths, generator=None) -> (B, embed_dim)` on cached features (B, T, bins) padded after `lengths[b]`
with the feature's silence value, and the attributes `n_mels`, `embed_dim` and `scale`. The cached feature an
encoder needs (`feature_spec`) follows from its name alone, so a run refuses a cache that does not fit before any
model is built. How to add one: docs/architecture.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from audioret.trainer.augment import DB_SCALE, FeatureScale

# Silence of the PaSST mel is (ln 1e-5 + 4.5) / 5 = −1.402585…, stored in the float16 shards as −1.40234375: the floor
# is the stored value, so silent cached frames are recognised as silence (never moved by the gain) and padding
# written in float16 (streamed batches) equals padding written in float32 (resident batches). Gain: ln 10 / 50 per dB.
PASST_SCALE = FeatureScale(floor=-1.40234375, per_db=0.04605170185988091)


@dataclass(frozen=True)
class FeatureSpec:
    """The cached feature an audio encoder is built for: the name `prep audio` records in the cache config
    (pipeline/feature_defs.py), the `prep audio` option that writes it, the numbers its shapes depend on, and
    its scale (silence value, gain per dB)."""

    feature: str
    features_option: str  # the `prep audio --features` value that writes it: panns | passt | hf:<extractor>
    n_mels: int
    sample_rate: int
    hop_length: int
    scale: FeatureScale = field(default=DB_SCALE)
    # hf: encoders: the extractor's class and resolved settings, as `prep audio` records them ("extractor_class",
    # "extractor_settings"); a cache fits when these match, whatever spelling of the name it was prepped with
    extractor: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def prep(self) -> str:
        return f"--features {self.features_option}"

    def numbers(self) -> dict[str, int]:
        return {"n_mels": self.n_mels, "sample_rate": self.sample_rate, "hop_length": self.hop_length}


FEATURE_SPECS: dict[str, FeatureSpec] = {
    "cnn10": FeatureSpec("panns-logmel", "panns", 64, 32000, 320, DB_SCALE),
    "passt": FeatureSpec("passt-mel", "passt", 128, 32000, 320, PASST_SCALE),
}
AUDIO_ENCODER_CHOICES = ("cnn10", "passt", "hf:<name or path>")


def encoder_kind(audio_encoder: str) -> str:
    """"cnn10", "passt" or "hf" for a config's `audio_encoder` value; ValueError for anything else."""
    name = str(audio_encoder).strip()
    if name in FEATURE_SPECS:
        return name
    if name.startswith("hf:") and name[3:].strip():
        return "hf"
    raise ValueError(f"audio_encoder {audio_encoder!r} is not one of {', '.join(AUDIO_ENCODER_CHOICES)}")


def feature_spec(audio_encoder: str = "cnn10") -> FeatureSpec:
    """The cached feature `audio_encoder` needs (an `hf:` encoder: its own feature extractor's output)."""
    kind = encoder_kind(audio_encoder)
    if kind == "hf":
        from audioret.trainer.encoders.hf import hf_feature_spec

        return hf_feature_spec(audio_encoder[3:].strip())
    return FEATURE_SPECS[kind]


def build_audio_encoder(cfg: Any, n_bins: int) -> nn.Module:
    """The audio encoder `cfg.audio_encoder` names, with random (cnn10) or configured initial weights."""
    kind = encoder_kind(cfg.audio_encoder)
    if kind == "cnn10":
        from audioret.trainer.encoders.cnn10 import AudioEncoder

        return AudioEncoder(n_mels=n_bins, width=cfg.audio_width, embed_dim=cfg.embed_dim, n_t=cfg.n_t,
                            w_t=cfg.w_t, n_f=cfg.n_f, w_f=cfg.w_f, projection=cfg.projection)
    if kind == "passt":
        from audioret.trainer.encoders.passt import build_passt_encoder

        return build_passt_encoder(cfg, n_bins)
    from audioret.trainer.encoders.hf import build_hf_audio_encoder

    return build_hf_audio_encoder(cfg, n_bins)


def build_text_encoder(cfg: Any) -> nn.Module:
    from audioret.trainer.encoders.text import TextEncoder

    return TextEncoder(cfg.text_model, embed_dim=cfg.embed_dim, max_tokens=cfg.max_tokens,
                       projection=cfg.projection, dropout=cfg.text_dropout)

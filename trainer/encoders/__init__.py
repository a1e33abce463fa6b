"""Audio and text encoders, one file each, and the registry that picks them by the config's name.

The contract every audio encoder keeps, so the loop, evaluation and augmentations need not know which one runs:
`forward(x, lengths, generator=None) -> (B, embed_dim)` on cached features (B, T, bins) padded after `lengths[b]`
with the feature's silence value, and the attributes `n_mels`, `embed_dim` and `scale`. The cached feature an
encoder needs (`feature_spec`, from cache/feature_contract.py) follows from its name alone, so a run refuses a
cache that does not fit before any model is built. How to add one: docs/architecture.md.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from audioret.cache.feature_contract import PANNS, PASST, FeatureSpec

# The cached feature each built-in encoder needs: the cache's feature contract (cache/feature_contract.py), which
# pipeline/ writes by and the trainer reads by.
FEATURE_SPECS: dict[str, FeatureSpec] = {"cnn10": PANNS, "passt": PASST}
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

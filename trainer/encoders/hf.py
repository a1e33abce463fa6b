"""Hugging Face audio encoders, `audio_encoder = "hf:<name or path>"`: AST (`ASTModel`) and CLAP's audio tower
(`ClapAudioModelWithProjection`), each on the cached output of its own feature extractor, then a projection head.

Why the extractor decides everything: the trainer may not import pipeline/, so `hf_feature_spec` derives the
cached feature's name and numbers from the same extractor config, and hf_inputs.py redoes its batch-time steps.
Weights load by name at run time (offline with HF_HUB_OFFLINE=1); a model that cannot be loaded is one line.
"""
from __future__ import annotations

import functools
import json
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from audioret.cache.feature_contract import (
    AST_HOP,
    AST_SCALE,
    CLAP_SCALE,
    HF_EXTRACTOR_SCALES,
    FeatureSpec,
    hf_extractor_spec,
)
from audioret.trainer.encoders.hf_inputs import ASTBatching, ClapBatching
from audioret.trainer.encoders.loading import ModelLoadError, check_model_source, model_load_error, quiet_transformers
from audioret.trainer.encoders.long_clips import LongInputs
from audioret.trainer.encoders.text import projection_head

MODEL_TYPES = {"ASTFeatureExtractor": ("audio-spectrogram-transformer",),
               "ClapFeatureExtractor": ("clap", "clap_audio_model")}


@functools.lru_cache(maxsize=8)
def load_feature_extractor(source: str) -> Any:
    """The feature extractor of `source` (hub name or local folder), a kind in `HF_EXTRACTOR_SCALES`; ModelLoadError
    else."""
    from transformers import AutoFeatureExtractor

    check_model_source("audio model", source, f"hf:{source}")
    try:
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # AST's numpy filterbank warns of an all-zero filter
            extractor = AutoFeatureExtractor.from_pretrained(source)
    except (OSError, ValueError, KeyError) as exc:
        raise model_load_error("audio model", f"hf:{source}", exc) from None
    kind = type(extractor).__name__
    if kind not in HF_EXTRACTOR_SCALES:
        raise ModelLoadError(f"audio model 'hf:{source}': its {kind} is not supported; supported: "
                             f"{', '.join(sorted(HF_EXTRACTOR_SCALES))}")
    return extractor


def hf_feature_spec(source: str) -> FeatureSpec:
    """The cached feature `hf:<source>` needs: exactly what `prep audio --features hf:<source>` records (name, bins,
    sample rate, hop, extractor class and settings; tests/trainer/test_hf_encoders.py checks the two agree), plus the
    scale of the cached values (both from cache/feature_contract.py `hf_extractor_spec`)."""
    extractor = load_feature_extractor(source)
    kind = type(extractor).__name__
    if kind == "ASTFeatureExtractor":
        bins, hop = int(extractor.num_mel_bins), AST_HOP
    else:
        bins, hop = int(extractor.feature_size), int(extractor.hop_length)
    return hf_extractor_spec(source, kind, bins, int(extractor.sampling_rate), hop,
                             {"extractor_class": kind, "extractor_settings": extractor_settings(extractor)})


def extractor_settings(extractor: Any) -> dict[str, Any]:
    """The extractor's resolved settings as a cache records them (pipeline/hf_features.py: `to_dict()` without the
    numpy filterbanks and windows, through JSON as the manifest stores it)."""
    settings = {k: v for k, v in extractor.to_dict().items() if not isinstance(v, np.ndarray)}
    return json.loads(json.dumps(settings))


def load_audio_model(source: str, kind: str) -> nn.Module:
    """`ASTModel` (AutoModel) or `ClapAudioModelWithProjection` (also from a full ClapModel checkpoint: it takes
    the audio tower and audio projection) from `source`, checked against its extractor kind."""
    from transformers import AutoConfig, AutoModel, ClapAudioModelWithProjection

    what = f"hf:{source}"
    try:
        with quiet_transformers():
            model_type = AutoConfig.from_pretrained(source).model_type
            if model_type not in MODEL_TYPES[kind]:
                raise ModelLoadError(f"audio model {what!r}: a {model_type} model with a {kind}; supported: AST "
                                     "(audio-spectrogram-transformer) and CLAP (clap), each with its own extractor")
            if kind == "ASTFeatureExtractor":
                return AutoModel.from_pretrained(source)
            return ClapAudioModelWithProjection.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise model_load_error("audio model", what, exc) from None


def _check(source: str, ok: bool, problem: str) -> None:
    if not ok:
        raise ModelLoadError(f"audio model 'hf:{source}': {problem}")


class ASTEncoder(nn.Module):
    """AST on the cached fbank: `ASTBatching` (pad/truncate to max_length, normalise) → ASTModel → its pooled
    output ((CLS + distillation token) / 2) → projection head. Draws nothing: dropout uses torch's global RNG."""

    scale = AST_SCALE

    def __init__(self, source: str, extractor: Any, embed_dim: int, projection: str = "linear") -> None:
        super().__init__()
        self.source, self.n_mels, self.embed_dim = source, int(extractor.num_mel_bins), embed_dim
        self.batching = ASTBatching.from_extractor(extractor)
        self.long_inputs = LongInputs(read_frames=self.batching.max_length)  # the rest is never read
        self.model = load_audio_model(source, "ASTFeatureExtractor")
        config = self.model.config
        _check(source, (config.max_length, config.num_mel_bins) == (self.batching.max_length, self.n_mels),
               f"the model takes {config.max_length} × {config.num_mel_bins} inputs, its extractor makes "
               f"{self.batching.max_length} × {self.n_mels}")
        self.proj = projection_head(projection, int(config.hidden_size), embed_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return self.proj(self.model(input_values=self.batching(x, lengths)).pooler_output)


class ClapEncoder(nn.Module):
    """CLAP's audio tower on the cached dB log-mel: `ClapBatching` (fusion / truncation / padding, hf_inputs.py)
    → ClapAudioModelWithProjection (its audio_embeds: CLAP's own projection) → projection head."""

    scale = CLAP_SCALE

    def __init__(self, source: str, extractor: Any, embed_dim: int, projection: str = "linear") -> None:
        super().__init__()
        self.source, self.n_mels, self.embed_dim = source, int(extractor.feature_size), embed_dim
        self.batching = ClapBatching.from_extractor(extractor)
        self.model = load_audio_model(source, "ClapFeatureExtractor")
        config = self.model.config
        check_clap_pair(source, config, self.batching, self.n_mels)
        self.proj = projection_head(projection, int(config.projection_dim), embed_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        features, is_longer = self.batching(x, lengths, generator, self.training)
        return self.proj(self.model(input_features=features, is_longer=is_longer).audio_embeds)


def check_clap_pair(source: str, audio_config: Any, batching: ClapBatching, n_mels: int) -> None:
    """A fused CLAP takes four mels per clip, an unfused one one: model and extractor must agree."""
    _check(source, bool(audio_config.enable_fusion) == batching.fusion,
           f"the model has enable_fusion={audio_config.enable_fusion}, its extractor truncation="
           f"{'fusion' if batching.fusion else 'rand_trunc'}")
    _check(source, int(audio_config.num_mel_bins) == n_mels,
           f"the model takes {audio_config.num_mel_bins} mel bins, its extractor makes {n_mels}")


def build_hf_audio_encoder(cfg: Any, n_bins: int) -> nn.Module:
    """The encoder `cfg.audio_encoder` = "hf:<source>" names, on `n_bins`-bin cached features."""
    source = str(cfg.audio_encoder).strip()[3:].strip()
    spec = hf_feature_spec(source)
    if n_bins != spec.n_mels:
        raise ValueError(f"hf:{source} takes {spec.n_mels}-bin features, the cache has {n_bins}")
    extractor = load_feature_extractor(source)
    cls = ASTEncoder if type(extractor).__name__ == "ASTFeatureExtractor" else ClapEncoder
    return cls(source, extractor, int(cfg.embed_dim), cfg.projection)

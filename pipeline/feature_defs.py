"""The registry of cacheable audio features: `prep audio --features panns|passt|hf:<extractor>`.

Each definition's computation lives once in pipeline/ and is described here by one `FeatureDefinition`: its name
and code version (from cache/feature_contract.py; recorded in the cache config, hence in the key), the config
that decides its numbers, the rate the decoder resamples to, and the function waveform → (frames, bins). The
trainer refuses a cache whose recorded feature does not fit its encoder. How to add one: docs/architecture.md.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from audioret.cache.feature_contract import PANNS, PASST

FEATURE_CHOICES = ("panns", "passt", "hf:<extractor name or path>")


class FeatureSpecError(ValueError):
    """A `--features` value that names no usable feature definition."""


@dataclass(frozen=True)
class FeatureDefinition:
    """One cacheable feature: what it is called, what decides its numbers, how to compute it from a waveform."""

    name: str  # recorded as config["feature"]; an encoder names the feature it needs
    version: str  # bump when the numbers change; recorded as config["feature_version"] and in the key
    config: dict  # n_mels (bins), sample_rate, hop_length, resampler, and everything else that decides the numbers
    compute: Callable[[np.ndarray], np.ndarray] = field(compare=False, repr=False)  # mono waveform → (frames, bins)
    versions: dict = field(default_factory=dict)  # library versions beyond the decoder's (part of the key)
    unkeyed: tuple[str, ...] = ()  # config entries recorded but left out of the key (hf: how its name was typed)

    @property
    def sample_rate(self) -> int:
        """The rate the decoder resamples every file to (pipeline/audio_io.py `load_mono` reads this)."""
        return int(self.config["sample_rate"])

    @property
    def resampler(self) -> str:
        return str(self.config.get("resampler", "soxr_hq"))

    @property
    def n_bins(self) -> int:
        return int(self.config["n_mels"])

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / float(self.config["hop_length"])

    def cache_config(self) -> dict:
        """The config a cache records (manifest, shard attributes, key): the feature's name and version first."""
        return {"feature": self.name, "feature_version": self.version, **self.config}

    def key_config(self) -> dict:
        """The part of `cache_config` the cache key covers: all of it but `unkeyed` (panns, passt: all of it)."""
        return {k: v for k, v in self.cache_config().items() if k not in self.unkeyed}


def _panns() -> FeatureDefinition:
    from audioret.pipeline.features import DEFAULT_CONFIG, log_mel_chunked

    return FeatureDefinition(PANNS.feature, PANNS.version, DEFAULT_CONFIG.to_dict(),
                             lambda y: log_mel_chunked(y, DEFAULT_CONFIG))


def _passt() -> FeatureDefinition:
    from audioret.pipeline.passt_features import DEFAULT_PASST_CONFIG, passt_mel

    return FeatureDefinition(PASST.feature, PASST.version, DEFAULT_PASST_CONFIG.to_dict(),
                             lambda y: passt_mel(y, DEFAULT_PASST_CONFIG))


@functools.lru_cache(maxsize=8)
def feature_definition(spec: str = "panns") -> FeatureDefinition:
    """The definition `spec` names ("panns", "passt" or "hf:<extractor name or path>"); built once per process."""
    spec = spec.strip()
    if spec == "panns":
        return _panns()
    if spec == "passt":
        return _passt()
    if spec.startswith("hf:") and spec[3:].strip():
        from audioret.pipeline.hf_features import hf_definition

        return hf_definition(spec[3:].strip())
    raise FeatureSpecError(f"unknown features {spec!r}: choose one of {', '.join(FEATURE_CHOICES)}")

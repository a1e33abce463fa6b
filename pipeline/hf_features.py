"""Hugging Face audio feature extractors as cacheable features: `prep audio --features hf:<name or path>`.

The extractors of AST and CLAP are deterministic numpy code, so their per-clip output is computed once and cached
like the log-mels: exactly what the extractor's own per-clip function returns for the whole clip, before anything
that depends on the batch or on chance. The cache config's "batch_time" records what remains, which the trainer
redoes in torch without importing the extractors. The key covers the extractor's class and settings, not the
name typed. Details: docs/data.md.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

from audioret.cache.feature_contract import AST_FRAME, AST_HOP, hf_extractor_spec
from audioret.cache.hub import PretrainedSourceError, check_source, unreachable_hint
from audioret.pipeline.feature_defs import FeatureDefinition, FeatureSpecError
from audioret.pipeline.features import frames_in_chunks

CHUNK_FRAMES = 6000  # frames per extractor call on long clips (60 s at 100 frames/s): bounded memory


def _drop_arrays(d: dict) -> dict:
    """The extractor's settings without numpy arrays (filterbanks, windows): JSON for the key and the manifest."""
    return {k: v for k, v in d.items() if not isinstance(v, np.ndarray)}


def _ast(extractor: Any) -> tuple[dict, Callable[[np.ndarray], np.ndarray]]:
    frame, hop = AST_FRAME, AST_HOP  # both of its paths (numpy spectrogram, torchaudio kaldi.fbank), no centring

    def fbank(y: np.ndarray) -> np.ndarray:
        if len(y) < frame:
            raise ValueError(f"clip of {len(y)} samples is shorter than one {frame}-sample AST frame")
        total = 1 + (len(y) - frame) // hop
        out = np.empty((total, extractor.num_mel_bins), dtype=np.float32)
        for t0 in range(0, total, CHUNK_FRAMES):  # frames are independent: a chunk is its own samples only
            t1 = min(total, t0 + CHUNK_FRAMES)
            seg = np.ascontiguousarray(y[t0 * hop:(t1 - 1) * hop + frame], dtype=np.float32)
            out[t0:t1] = extractor._extract_fbank_features(seg, max_length=t1 - t0)
        return out

    batch_time = {"pad_or_truncate_to_frames": extractor.max_length, "pad_value": 0.0,
                  "then_normalize": "(x - mean) / (2 * std)" if extractor.do_normalize else None,
                  "mean": extractor.mean, "std": extractor.std}
    config = {"n_mels": extractor.num_mel_bins, "sample_rate": extractor.sampling_rate, "hop_length": hop,
              "frame_length": frame, "center": False, "cached": "per-clip fbank before padding and normalisation",
              "batch_time": batch_time}
    return config, fbank


def _clap(extractor: Any) -> tuple[dict, Callable[[np.ndarray], np.ndarray]]:
    fusion = extractor.truncation == "fusion"
    filters = extractor.mel_filters if fusion else extractor.mel_filters_slaney
    hop, n_fft = extractor.hop_length, extractor.fft_window_size

    def whole(y: np.ndarray) -> np.ndarray:
        # float64 waveform, as ClapFeatureExtractor.__call__ hands it on
        return extractor._np_extract_fbank_features(np.asarray(y, dtype=np.float64), filters).astype(np.float32)

    def log_mel(y: np.ndarray) -> np.ndarray:
        return frames_in_chunks(y, whole, extractor.feature_size, hop, n_fft, CHUNK_FRAMES)

    batch_time = {"truncation": extractor.truncation, "padding": extractor.padding,
                  "max_frames": extractor.nb_max_samples // hop + 1,
                  "short_clips": "the extractor repeats the waveform before its mel; repeating frames approximates it"}
    config = {"n_mels": extractor.feature_size, "sample_rate": extractor.sampling_rate, "hop_length": hop,
              "filterbank": "htk" if fusion else "slaney",
              "cached": "per-clip log-mel (dB) before truncation and fusion", "batch_time": batch_time}
    return config, log_mel


_ADAPTERS = {"ASTFeatureExtractor": _ast, "ClapFeatureExtractor": _clap}


def hf_definition(source: str) -> FeatureDefinition:
    """The feature definition of the Hugging Face extractor at `source` (a hub name or a local folder).

    Loaded with AutoFeatureExtractor (offline when HF_HUB_OFFLINE=1, or when the hub cannot be reached:
    cache/hub.py); its sampling rate decides the resample rate.
    """
    try:
        check_source(source)  # before transformers is imported: offline mode then applies from the start
    except PretrainedSourceError as exc:
        raise FeatureSpecError(f"hf:{source}: {exc.problem}") from None
    import transformers
    from transformers import AutoFeatureExtractor
    from transformers.utils import is_speech_available

    try:
        with warnings.catch_warnings():  # AST's own numpy filterbank warns about an all-zero filter, by design
            warnings.simplefilter("ignore", UserWarning)
            extractor = AutoFeatureExtractor.from_pretrained(source)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FeatureSpecError(f"hf:{source}: cannot load a feature extractor ({first}){unreachable_hint()}") from None
    kind = type(extractor).__name__
    if kind not in _ADAPTERS:
        raise FeatureSpecError(f"hf:{source}: {kind} is not supported; supported: {', '.join(sorted(_ADAPTERS))}")
    config, compute = _ADAPTERS[kind](extractor)
    config = {**config, "extractor": source, "extractor_class": kind, "resampler": "soxr_hq",
              "extractor_settings": _drop_arrays(extractor.to_dict())}
    # torchaudio present → AST takes its kaldi.fbank path instead of numpy: other numbers, so part of the key
    versions = {"transformers": transformers.__version__, "torchaudio_path": bool(is_speech_available())}
    # Keyed by what the extractor does (class + settings), not by how its name was typed: "/abs/clap", "/abs/clap/"
    # and "clap" from /abs are one cache; the name stays recorded (messages, `cache ls`).
    spec = hf_extractor_spec(source, kind, config["n_mels"], config["sample_rate"], config["hop_length"])
    return FeatureDefinition(spec.feature, spec.version, config, compute, versions, unkeyed=("feature", "extractor"))

"""The PaSST mel (DCASE 2025 task 6 baseline): hear21passt's `AugmentMelSTFT` in eval mode, computed once for the
cache instead of on every training step.

Written from hear21passt's preprocessing and torchaudio's kaldi mel banks, not imported, because torchaudio
cannot be installed beside this project's torch. Random parts of its training mode cannot be cached; the trainer's
augmentations stand in. The formula and float16 storage: docs/data.md. Name, version, bins, rate, hop and stored
silence are the feature contract (cache/feature_contract.py `PASST`): bump the version there when they change.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from audioret.cache.feature_contract import PASST
from audioret.pipeline.features import frames_in_chunks, power_spectrogram


@dataclass(frozen=True)
class PasstMelConfig:
    sample_rate: int = PASST.sample_rate
    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = PASST.hop_length
    n_mels: int = PASST.n_mels
    fmin: float = 0.0
    fmax: float = 15000.0  # sr/2 − fmax_aug_range/2 with hear21passt's fmax_aug_range 2000 (eval mode)
    preemphasis: float = 0.97
    window: str = "hann-symmetric"
    center: bool = True
    pad_mode: str = "reflect"
    log_offset: float = 1e-5
    norm_shift: float = 4.5
    norm_scale: float = 5.0
    resampler: str = "soxr_hq"
    dtype: str = "float16"

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_PASST_CONFIG = PasstMelConfig()


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: float, fmin: float, fmax: float) -> np.ndarray:
    """Kaldi's triangular mel filterbank (no VTLN warp) as float64 (n_mels, n_fft // 2).

    Kaldi mel scale m(f) = 1127·ln(1 + f/700); n_mels + 2 edges evenly spaced in mel between m(fmin) and m(fmax);
    FFT bin k sits at k·sr/n_fft for k < n_fft/2 (kaldi leaves out the Nyquist bin); each weight is the triangle
    max(0, min(rising, falling)) evaluated in the mel domain, unnormalised.
    """
    def mel(f):
        return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)

    if fmax <= 0.0:  # kaldi: a non-positive high cut-off counts back from Nyquist
        fmax += 0.5 * sample_rate
    delta = (mel(fmax) - mel(fmin)) / (n_mels + 1)
    left = mel(fmin) + delta * np.arange(n_mels, dtype=np.float64)[:, None]
    centre, right = left + delta, left + 2.0 * delta
    bin_mel = mel(np.arange(n_fft // 2, dtype=np.float64) * (sample_rate / n_fft))[None, :]
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


@functools.lru_cache(maxsize=4)
def _mel_basis(config: PasstMelConfig) -> np.ndarray:
    """hear21passt's matrix: the kaldi banks plus one zero column (the Nyquist bin), float32 (bins, n_mels)."""
    banks = kaldi_mel_banks(config.n_mels, config.n_fft, config.sample_rate, config.fmin, config.fmax)
    return np.ascontiguousarray(np.pad(banks, ((0, 0), (0, 1))).T, dtype=np.float32)


@functools.lru_cache(maxsize=4)
def _window(win_length: int, n_fft: int) -> np.ndarray:
    """torch.hann_window(win_length, periodic=False), centred in n_fft zeros as torch.stft places a short window."""
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / (win_length - 1))
    left = (n_fft - win_length) // 2
    return np.pad(w, (left, n_fft - win_length - left)).astype(np.float32)


def n_frames(n_samples: int, config: PasstMelConfig = DEFAULT_PASST_CONFIG) -> int:
    """Frames for `n_samples` input samples: pre-emphasis drops one sample, the centred STFT adds one frame."""
    return 1 + (n_samples - 1) // config.hop_length


def _mel_of_emphasised(z: np.ndarray, config: PasstMelConfig) -> np.ndarray:
    """Frame-local part: power STFT → mel → log → normalise, on an already pre-emphasised signal."""
    power = power_spectrogram(z, config.n_fft, config.hop_length, _window(config.win_length, config.n_fft),
                              config.center, config.pad_mode)
    mel = power @ _mel_basis(config)
    out = (np.log(mel + np.float32(config.log_offset)) + np.float32(config.norm_shift)) / np.float32(config.norm_scale)
    return np.ascontiguousarray(out, dtype=np.float32)


def passt_mel(waveform: np.ndarray, config: PasstMelConfig = DEFAULT_PASST_CONFIG,
              chunk_frames: int | None = None) -> np.ndarray:
    """Mono waveform at `config.sample_rate` → float32 (1 + (n−1)//hop, n_mels) PaSST mel.

    Long clips are computed in chunks with true context (pipeline/features.py `frames_in_chunks`), so memory stays
    bounded; the pre-emphasised signal itself is one float32 copy of the waveform. Measured on 10 min of noise
    (tracemalloc, waveform not counted): peak 174 MB in chunks vs 659 MB in one call, identical output.
    """
    y = np.asarray(waveform, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"passt_mel expects a mono 1-D waveform, got shape {y.shape}")
    if y.size < 2:
        raise ValueError(f"waveform of {y.size} samples is too short for pre-emphasis")
    if not np.all(np.isfinite(y)):
        raise ValueError("waveform contains NaN or inf samples")
    z = y[1:] - np.float32(config.preemphasis) * y[:-1]
    return frames_in_chunks(z, lambda seg: _mel_of_emphasised(seg, config), config.n_mels, config.hop_length,
                            config.n_fft, chunk_frames)

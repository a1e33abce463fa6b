"""The one log-mel definition of the project (PANNs / CP-JKU DCASE 2022 front end).

Used by `prep audio` to fill the cache and by `retrieve --audio-dir` for new files, so a model always sees the
same features it was trained on. The numbers are the contract in DESIGN.md: 32 kHz, n_fft = window = 1024 (Hann),
hop 320 (100 frames/s), centre/reflect padding, power spectrogram, 64 Slaney mel bins 50–14000 Hz,
10·log10(max(x, 1e-10)) with no top_db. Bump FEATURE_CODE_VERSION whenever the numbers this module produces change:
it is part of every audio cache key.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

FEATURE_CODE_VERSION = "logmel-1"
FLOOR_DB = -100.0  # 10*log10(1e-10): silence and padding


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = 32000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    window: str = "hann"
    center: bool = True
    pad_mode: str = "reflect"
    amin: float = 1e-10
    resampler: str = "soxr_hq"
    dtype: str = "float16"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


DEFAULT_CONFIG = LogMelConfig()


@functools.lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


def n_frames(n_samples: int, config: LogMelConfig = DEFAULT_CONFIG) -> int:
    """Frames a centred STFT yields for `n_samples` samples."""
    return 1 + n_samples // config.hop_length


def log_mel(waveform: np.ndarray, config: LogMelConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Mono waveform at `config.sample_rate` → float32 (frames, n_mels) log-mel in dB (≥ −100 dB floor).

    Silence gives exactly the floor, never NaN/inf. Storage precision (float16) is the caller's business.
    """
    import librosa

    y = np.asarray(waveform, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"log_mel expects a mono 1-D waveform, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("log_mel got an empty waveform")
    if not np.all(np.isfinite(y)):
        raise ValueError("waveform contains NaN or inf samples")
    spec = librosa.stft(
        y,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=config.window,
        center=config.center,
        pad_mode=config.pad_mode,
    )
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    mel = _mel_basis(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax) @ power
    # float64 for the log so the floor is exactly -100 dB (float32 rounding of 1e-10 gives -100.00001).
    out = 10.0 * np.log10(np.maximum(mel.astype(np.float64), config.amin))
    return np.ascontiguousarray(out.T, dtype=np.float32)

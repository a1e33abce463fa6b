"""The one PANNs log-mel definition of the project (the CP-JKU DCASE 2022 front end).

Used by `prep audio` to fill the cache and, through it, for new files at retrieval, so a model always sees the
features it was trained on. The numbers: 32 kHz, n_fft = window = 1024 (Hann), hop 320, 64 Slaney mel bins
50–14000 Hz, 10·log10(max(x, 1e-10)) (docs/data.md). Name, version, bins, rate, hop and floor are the cache's
feature contract (cache/feature_contract.py `PANNS`): bump the version there when these numbers change.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from audioret.cache.feature_contract import PANNS

CHUNK_FRAMES = 6000  # log-mel frames per STFT call (60 s): clips up to a minute take exactly one call


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = PANNS.sample_rate
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = PANNS.hop_length
    n_mels: int = PANNS.n_mels
    fmin: float = 50.0
    fmax: float = 14000.0
    window: str = "hann"
    center: bool = True
    pad_mode: str = "reflect"
    amin: float = 1e-10  # 10·log10(amin) is the contract's FLOOR_DB: silence and padding
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
    """librosa.filters.mel's default filterbank (Slaney mel scale, Slaney area norm), float32 (n_mels, bins).

    Written out here (and checked against librosa in tests/pipeline/test_features.py) so that `prep audio` workers need
    neither librosa nor scipy.signal: importing them cost each spawned worker over a second."""
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0),
                        f * 3.0 / 200.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3.0)

    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0.0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


def n_frames(n_samples: int, config: LogMelConfig = DEFAULT_CONFIG) -> int:
    """Frames a centred STFT yields for `n_samples` samples."""
    return 1 + n_samples // config.hop_length


def log_mel(waveform: np.ndarray, config: LogMelConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Mono waveform at `config.sample_rate` → float32 (frames, n_mels) log-mel in dB (≥ −100 dB floor).

    Silence gives exactly the floor, never NaN/inf. Storage precision (float16) is the caller's business.
    """
    y = np.asarray(waveform, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"log_mel expects a mono 1-D waveform, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("log_mel got an empty waveform")
    if not np.all(np.isfinite(y)):
        raise ValueError("waveform contains NaN or inf samples")
    power = _power_spectrogram(y, config)
    mel = power @ _mel_basis(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax).T
    # float64 for the log so the floor is exactly -100 dB (float32 rounding of 1e-10 gives -100.00001).
    out = 10.0 * np.log10(np.maximum(mel.astype(np.float64), config.amin))
    return np.ascontiguousarray(out, dtype=np.float32)


def log_mel_chunked(y: np.ndarray, config: LogMelConfig = DEFAULT_CONFIG,
                    chunk_frames: int | None = None) -> np.ndarray:
    """`features.log_mel(y)`, computed `chunk_frames` frames at a time so memory stays bounded on long clips."""
    return frames_in_chunks(y, lambda seg: log_mel(seg, config), config.n_mels, config.hop_length, config.n_fft,
                            chunk_frames)


def frames_in_chunks(y: np.ndarray, frame_fn: Callable[[np.ndarray], np.ndarray], n_bins: int, hop: int,
                     n_fft: int, chunk_frames: int | None = None) -> np.ndarray:
    """`frame_fn(y)` for a centred STFT-based feature (1 + len(y) // hop frames), `chunk_frames` frames at a time.

    Each chunk is given whole hops of true context on either side (≥ n_fft/2 samples), so every kept frame sees
    exactly the samples it sees in one whole-signal call; only the real start and end of the clip use centre
    padding, as in one call. (The FFT batch differs, so a frame may differ by float32 rounding, ≤ 1 ulp.)
    """
    chunk_frames = chunk_frames or CHUNK_FRAMES
    total = 1 + len(y) // hop
    if total <= chunk_frames:
        return frame_fn(y)
    context = -(-(n_fft // 2) // hop)  # whole hops covering half a window
    out = np.empty((total, n_bins), dtype=np.float32)
    for t0 in range(0, total, chunk_frames):
        t1 = min(total, t0 + chunk_frames)
        first = max(0, t0 - context)
        seg = frame_fn(y[first * hop:min(len(y), (t1 - 1 + context) * hop + 1)])
        out[t0:t1] = seg[t0 - first:t1 - first]
    return out


@functools.lru_cache(maxsize=8)
def _window(name: str, win_length: int, n_fft: int) -> np.ndarray:
    """The periodic ("fftbins") window librosa.stft uses, centred and zero-padded to `n_fft`."""
    if name == "hann":  # the contract's window, without importing scipy.signal (slow to import)
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    else:
        import scipy.signal

        w = scipy.signal.get_window(name, win_length, fftbins=True)
    left = (n_fft - win_length) // 2
    return np.pad(w.astype(np.float32), (left, n_fft - win_length - left))


def _power_spectrogram(y: np.ndarray, config: LogMelConfig) -> np.ndarray:
    """|STFT|² as (frames, 1 + n_fft/2) float32 with this config's (periodic, librosa) window."""
    window = _window(config.window, config.win_length, config.n_fft)
    return power_spectrogram(y, config.n_fft, config.hop_length, window, config.center, config.pad_mode)


def power_spectrogram(y: np.ndarray, n_fft: int, hop_length: int, window: np.ndarray, center: bool = True,
                      pad_mode: str = "reflect") -> np.ndarray:
    """|STFT|² as (frames, 1 + n_fft/2) float32: librosa.stft's / torch.stft's framing (centred, `pad_mode`
    padding; `window` already zero-padded to n_fft), computed with a strided frame view and scipy's float32 real
    FFT. It matches librosa.stft within 6e-6 dB after the log (tests/pipeline/test_features.py) at about half the time,
    which is most of `prep audio`'s per-clip cost."""
    import scipy.fft
    from numpy.lib.stride_tricks import sliding_window_view

    if center:
        y = np.pad(y, n_fft // 2, mode=pad_mode)
    if y.size < n_fft:
        raise ValueError(f"waveform of {y.size} samples is shorter than one {n_fft}-sample frame")
    frames = sliding_window_view(y, n_fft)[::hop_length]
    spec = scipy.fft.rfft(frames * window, axis=1, overwrite_x=True)
    return spec.real**2 + spec.imag**2

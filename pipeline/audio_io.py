"""Decoding and resampling: any file soundfile reads (WAV/FLAC/OGG/MP3), any rate, any channel count → mono 32 kHz.

Errors are raised as `AudioDecodeError` with a one-line message naming the problem, so `prep audio` can list the
file in its failure report and carry on with the rest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.features import DEFAULT_CONFIG, LogMelConfig


class AudioDecodeError(Exception):
    """A file that cannot become a waveform: unreadable, not audio, empty, or corrupt."""


def decoder_versions() -> dict:
    """Versions of everything between the file and the waveform; part of the audio cache key."""
    import scipy
    import soundfile
    import soxr

    return {
        "soundfile": soundfile.__version__,
        "libsndfile": soundfile.__libsndfile_version__,
        "soxr": soxr.__version__,
        "scipy": scipy.__version__,  # scipy.fft computes the STFT (pipeline/features.py)
    }


def load_mono(path: str | Path, config: LogMelConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Decode `path`, average the channels and resample to `config.sample_rate` with `config.resampler`."""
    import soundfile

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise AudioDecodeError("empty file (0 bytes)")
    except FileNotFoundError:
        raise AudioDecodeError("file not found") from None
    except PermissionError:
        raise AudioDecodeError("permission denied") from None
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise AudioDecodeError("file not found") from None
    except PermissionError:
        raise AudioDecodeError("permission denied") from None
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        msg = msg.replace(f"Error opening {str(path)!r}: ", "")  # the caller names the file already
        raise AudioDecodeError(f"cannot decode: {msg}") from None
    if data.shape[0] == 0:
        raise AudioDecodeError("zero-length audio (no samples)")
    y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(y)):
        raise AudioDecodeError("decoded samples contain NaN or inf")
    if rate != config.sample_rate:
        y = resample(y, rate, config.sample_rate, config.resampler)
    return np.ascontiguousarray(y, dtype=np.float32)


def resample(y: np.ndarray, orig_sr: int, target_sr: int, quality: str = "soxr_hq") -> np.ndarray:
    """librosa.resample(res_type="soxr_…") without importing librosa: soxr, then trim or zero-pad to
    ceil(n · target/orig) samples as librosa's `fix=True` does (tests/test_features.py checks they are equal)."""
    import soxr

    n_out = int(np.ceil(y.shape[0] * float(target_sr) / orig_sr))
    out = soxr.resample(y, orig_sr, target_sr, quality=quality)
    if out.shape[0] >= n_out:
        return out[:n_out]
    return np.pad(out, (0, n_out - out.shape[0]))


def file_log_mel(path: str | Path, config: LogMelConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Decode + resample + log-mel for one file: the whole per-clip feature path, float32 (frames, n_mels)."""
    from pipeline.features import log_mel

    return log_mel(load_mono(path, config), config)

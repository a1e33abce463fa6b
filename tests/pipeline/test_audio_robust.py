"""Decoder robustness on files real users have: corrupt float data, truncated downloads, long recordings.

Each test guards a defect that was found by stress-testing `load_mono`/`file_log_mel` (see the commit messages):
NaN features from finite-but-absurd float samples, truncated WAV/MP3 silently cached as shorter clips, misleading
"does not exist" messages, and whole-file decoding whose memory grew ~1.3 GB per 10 min of 48 kHz stereo.
"""
from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from audioret.pipeline import audio_io, features
from audioret.pipeline.audio_io import AudioDecodeError, file_log_mel, load_mono
from audioret.pipeline.features import log_mel, log_mel_chunked
from support import AUDIO


def tone(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    y = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return np.stack([y * (1 - 0.2 * c) for c in range(channels)], 1).astype(np.float32)


def test_absurd_float_samples_are_an_error_never_nan_features(tmp_path: Path) -> None:
    y = tone(44100, 1.0)[:, 0]
    sf.write(tmp_path / "int_scaled.wav", y * 32767, 44100, subtype="FLOAT")  # unnormalised but real audio
    assert np.isfinite(file_log_mel(tmp_path / "int_scaled.wav")).all()
    y[1000] = 1e30  # finite, but the power spectrum overflows float32 into NaN
    sf.write(tmp_path / "corrupt.wav", y, 44100, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="magnitude 1e\\+30"):
        load_mono(tmp_path / "corrupt.wav")


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_truncated_files_are_errors(tmp_path: Path, fmt: str) -> None:
    full = tmp_path / f"full.{fmt}"
    sf.write(full, tone(44100, 3.0)[:, 0], 44100)
    assert load_mono(full).shape == (96000,)
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(AudioDecodeError, match="truncated") as err:
        load_mono(cut)
    assert "\n" not in str(err.value)


def test_real_mp3s_with_inexact_lengths_are_not_called_truncated() -> None:
    """The bundled MP3s include an Info header one frame off, and files whose length is only estimated."""
    for path in sorted((AUDIO / "animals_cc0").glob("*.mp3")):
        assert load_mono(path).size > 0, path.name


def test_unreadable_bytes_get_a_message_that_says_so(tmp_path: Path) -> None:
    (tmp_path / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + bytes(4000))
    sf.write(tmp_path / "x.mp3", tone(44100, 1.0)[:, 0], 44100)
    (tmp_path / "stub.mp3").write_bytes((tmp_path / "x.mp3").read_bytes()[:40])
    (tmp_path / "folder.wav").mkdir()
    for name, expected in [("song.m4a", "format not recognised"), ("stub.mp3", "format not recognised"),
                           ("folder.wav", "not a regular file")]:
        with pytest.raises(AudioDecodeError, match=expected) as err:
            load_mono(tmp_path / name)
        assert "does not exist" not in str(err.value)


@pytest.mark.parametrize("rate,channels", [(44100, 2), (48000, 6), (32000, 1), (8000, 1)])
def test_block_streaming_equals_whole_file_decode(tmp_path: Path, monkeypatch, rate: int, channels: int) -> None:
    """Small blocks force many reads and a streaming resample; the result must be the one-shot result exactly."""
    path = tmp_path / "clip.flac"
    sf.write(path, tone(rate, 1.3, channels), rate, subtype="PCM_24")
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    whole = librosa.resample(data.mean(axis=1), orig_sr=rate, target_sr=32000, res_type="soxr_hq")
    monkeypatch.setattr(audio_io, "BLOCK_FRAMES", 4093)
    assert np.array_equal(load_mono(path), whole)


@pytest.mark.parametrize("n", [32000 * 3, 320 * 301, 320 * 301 + 319, 320 * 250 + 1, 700])
def test_chunked_log_mel_equals_one_call(n: int) -> None:
    y = tone(32000, n / 32000)[:, 0]
    whole = log_mel(y)
    chunked = log_mel_chunked(y, chunk_frames=50)
    assert chunked.shape == whole.shape
    assert np.abs(chunked - whole).max() <= 1e-4  # float32 rounding of a different FFT batch at most


def test_memory_grows_with_the_mono_output_not_the_source(tmp_path: Path, monkeypatch) -> None:
    """Scaled-down long recording (small blocks and chunks stand in for 47 s / 60 s): the peak must stay near
    the 32 kHz mono output, not the multi-channel float source plus a whole-clip STFT (was 7×)."""
    import tracemalloc

    path = tmp_path / "long.wav"
    sf.write(path, tone(48000, 20.0, 2), 48000, subtype="PCM_16")
    monkeypatch.setattr(audio_io, "BLOCK_FRAMES", 48000)
    monkeypatch.setattr(features, "CHUNK_FRAMES", 300)
    output_bytes = 20 * 32000 * 4
    sf.write(tmp_path / "warm.wav", tone(48000, 0.5, 2), 48000)
    file_log_mel(tmp_path / "warm.wav")  # imports and filter caches are not the clip's memory
    tracemalloc.start()
    try:
        feats = file_log_mel(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert feats.shape == (2001, 64)
    assert peak < 3 * output_bytes, f"peak {peak / 1e6:.1f} MB for {output_bytes / 1e6:.1f} MB of output"

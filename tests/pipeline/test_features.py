"""The one log-mel definition against an independent librosa reference, on the real bundled clips."""
from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from audioret.cache.feature_contract import FLOOR_DB
from audioret.pipeline.audio_io import file_log_mel, load_mono
from audioret.pipeline.features import _mel_basis, _window, log_mel, n_frames
from support import real_clips


def reference_log_mel(path: Path) -> np.ndarray:
    """The paper's recipe (pipeline/features.py) written independently with librosa's high-level calls:
    (frames, 64) dB."""
    y, _ = librosa.load(str(path), sr=32000, mono=True, res_type="soxr_hq")
    mel = librosa.feature.melspectrogram(y=y, sr=32000, n_fft=1024, win_length=1024, hop_length=320,
                                         window="hann", center=True, pad_mode="reflect", power=2.0,
                                         n_mels=64, fmin=50.0, fmax=14000.0)
    return (10.0 * np.log10(np.maximum(mel.astype(np.float64), 1e-10))).T


CLIPS = real_clips()


def test_bundled_clips_cover_the_formats() -> None:
    infos = [sf.info(str(p)) for p in CLIPS]
    assert {p.suffix for p in CLIPS} == {".mp3", ".flac", ".wav"}
    assert any(i.channels == 2 for i in infos) and any(i.samplerate == 8000 for i in infos)


@pytest.mark.parametrize("path", CLIPS, ids=[p.name for p in CLIPS])
def test_log_mel_matches_librosa_reference(path: Path) -> None:
    ours = file_log_mel(path)
    ref = reference_log_mel(path)
    assert ours.dtype == np.float32 and ours.shape == ref.shape and ours.shape[1] == 64
    assert np.isfinite(ours).all() and ours.min() >= FLOOR_DB
    assert np.abs(ours - ref).max() < 0.05, f"{path.name}: max |diff| {np.abs(ours - ref).max():.4f} dB"
    # float16 storage adds at most half an fp16 step (0.03125 dB at |x| < 128) on top.
    assert np.abs(ours.astype(np.float16).astype(np.float32) - ours).max() <= 0.0313


def test_stereo_is_the_channel_mean(tmp_path: Path) -> None:
    stereo = next(p for p in CLIPS if sf.info(str(p)).channels == 2)
    data, rate = sf.read(str(stereo), dtype="float32", always_2d=True)
    sf.write(tmp_path / "left.wav", data[:, 0], rate, subtype="FLOAT")
    sf.write(tmp_path / "mean.wav", data.mean(axis=1), rate, subtype="FLOAT")
    assert np.array_equal(load_mono(stereo), load_mono(tmp_path / "mean.wav"))
    assert not np.array_equal(load_mono(stereo), load_mono(tmp_path / "left.wav"))


def test_silence_is_exactly_the_floor(tmp_path: Path) -> None:
    assert np.all(log_mel(np.zeros(32000, dtype=np.float32)) == FLOOR_DB)
    sf.write(tmp_path / "silence.wav", np.zeros(8000 * 2, dtype=np.int16), 8000, subtype="PCM_16")
    feats = file_log_mel(tmp_path / "silence.wav")
    assert feats.shape == (n_frames(64000), 64) and np.all(feats == FLOOR_DB)
    tiny = np.full(32000, 1e-30, dtype=np.float32)  # denormal-ish input: still finite and floored
    out = log_mel(tiny)
    assert np.isfinite(out).all() and out.min() == FLOOR_DB


@pytest.mark.parametrize("n", [1, 319, 320, 321, 640, 32000, 32001])
def test_frame_count(n: int) -> None:
    y = np.random.default_rng(n).standard_normal(max(n, 1)).astype(np.float32) * 0.1
    assert n_frames(n) == 1 + n // 320
    if n >= 513:  # reflect padding needs more samples than half a window
        assert log_mel(y).shape == (1 + n // 320, 64)


def test_bad_waveforms_are_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        log_mel(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        log_mel(np.array([0.0, np.nan] * 600, dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 1000), dtype=np.float32))


@pytest.mark.parametrize("n", [1, 100, 512, 513, 1024, 32007, 320 * 3001 + 5])
def test_own_stft_matches_librosa_stft(n: int) -> None:
    """The fast framing + float32 FFT in features.py is librosa.stft's centred STFT, to float32 rounding."""
    y = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    ref = np.abs(librosa.stft(y, n_fft=1024, hop_length=320, window="hann", center=True, pad_mode="reflect")) ** 2
    ref_db = 10 * np.log10(np.maximum(librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50.0,
                                                          fmax=14000.0) @ ref, 1e-10)).T
    ours = log_mel(y)
    assert ours.shape == ref_db.shape == (n_frames(n), 64)
    assert np.abs(ours - ref_db).max() < 1e-4


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax",
                         [(32000, 1024, 64, 50.0, 14000.0), (44100, 2048, 128, 0.0, 22050.0)])
def test_mel_basis_and_window_equal_librosa(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> None:
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert np.array_equal(_mel_basis(sr, n_fft, n_mels, fmin, fmax), ref)
    assert np.array_equal(_window("hann", n_fft, n_fft), librosa.filters.get_window("hann", n_fft, fftbins=True)
                          .astype(np.float32))


@pytest.mark.parametrize("orig_sr", [8000, 11025, 22050, 44100, 48000, 96000])
def test_resampling_equals_librosa_soxr_hq(orig_sr: int, tmp_path: Path) -> None:
    """load_mono streams through soxr without librosa; the samples are librosa.resample's, bit for bit."""
    y = np.random.default_rng(orig_sr).standard_normal(orig_sr + 7).astype(np.float32) * 0.1
    sf.write(tmp_path / "x.wav", y, orig_sr, subtype="FLOAT")
    ref = librosa.resample(y, orig_sr=orig_sr, target_sr=32000, res_type="soxr_hq")
    assert np.array_equal(load_mono(tmp_path / "x.wav"), ref)

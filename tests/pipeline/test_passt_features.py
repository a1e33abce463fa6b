"""The PaSST mel (pipeline/passt_features.py) against an independent transcription of hear21passt's
`AugmentMelSTFT` in eval mode, written here with torch ops and transformers' kaldi filterbank, on real clips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.audio_utils import mel_filter_bank

from audioret.pipeline.audio_io import load_mono
from audioret.pipeline.feature_defs import feature_definition
from audioret.pipeline.passt_features import DEFAULT_PASST_CONFIG, kaldi_mel_banks, n_frames, passt_mel
from support import AUDIO

CLIPS = [AUDIO / "animals_cc0" / "cat.mp3", AUDIO / "sonic_pi_cc0" / "loop_amen.flac",
         AUDIO / "fsdd_ccbysa" / "0_george_0.wav"]  # MP3 44.1 kHz, stereo FLAC, 8 kHz WAV


def transformers_kaldi_basis(n_mels: int = 128, n_fft: int = 1024, sr: int = 32000, fmin: float = 0.0,
                             fmax: float = 15000.0) -> np.ndarray:
    """(1 + n_fft/2, n_mels): the Nyquist bin lies above fmax, so it is the zero column hear21passt pads with."""
    return mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=fmin,
                           max_frequency=fmax, sampling_rate=sr, norm=None, mel_scale="kaldi",
                           triangularize_in_mel_space=True)


def hear21passt_eval_mel(y: np.ndarray) -> np.ndarray:
    """hear21passt AugmentMelSTFT.forward with training off, transcribed op by op (frames, 128)."""
    x = torch.from_numpy(y)[None]
    x = torch.nn.functional.conv1d(x.unsqueeze(1), torch.tensor([[[-0.97, 1.0]]])).squeeze(1)
    spec = torch.stft(x, 1024, hop_length=320, win_length=800, center=True, normalized=False,
                      window=torch.hann_window(800, periodic=False), return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2
    mel = torch.from_numpy(transformers_kaldi_basis().T.astype(np.float32)) @ power
    return ((torch.log(mel + 0.00001) + 4.5) / 5.0)[0].T.numpy()


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(32000, 1024, 128, 0.0, 15000.0),
                                                      (16000, 512, 64, 20.0, 8000.0)])
def test_kaldi_banks_equal_transformers(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> None:
    ours = kaldi_mel_banks(n_mels, n_fft, sr, fmin, fmax)
    assert ours.shape == (n_mels, n_fft // 2)
    ref = transformers_kaldi_basis(n_mels, n_fft, sr, fmin, fmax)
    assert np.abs(np.pad(ours, ((0, 0), (0, 1))).T - ref).max() < 1e-6


def test_kaldi_banks_equal_the_formula_bin_by_bin() -> None:
    """Kaldi's definition written as plainly as possible: scalar loops over bins and FFT bins."""
    import math

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    banks = kaldi_mel_banks(128, 1024, 32000, 0.0, 15000.0)
    delta = (mel(15000.0) - mel(0.0)) / 129
    for b in (0, 1, 63, 127):
        left, centre, right = mel(0.0) + b * delta, mel(0.0) + (b + 1) * delta, mel(0.0) + (b + 2) * delta
        for k in range(512):
            m = mel(k * 32000 / 1024)
            want = max(0.0, min((m - left) / (centre - left), (right - m) / (right - centre)))
            assert banks[b, k] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("path", CLIPS, ids=lambda p: p.suffix)
def test_passt_mel_equals_hear21passt_eval_mode(path: Path) -> None:
    y = load_mono(path)  # 32 kHz mono: PANNs and PaSST share the decode path
    ours = passt_mel(y)
    ref = hear21passt_eval_mel(y)
    assert ours.shape == ref.shape == (1 + (len(y) - 1) // 320, 128)
    assert np.abs(ours - ref).max() < 1e-4  # float32 FFT rounding, mostly in near-silent bins
    # What the cache stores: float16 rounding of values in [-1.41, 3) is at most half a step at [2, 4) = 2**-10.
    stored = ours.astype(np.float16).astype(np.float32)
    assert np.abs(stored - ref).max() <= 2.0 ** -10 + 1e-4


def test_chunked_long_clip_equals_one_call_and_frame_count() -> None:
    y = load_mono(CLIPS[1])
    assert np.abs(passt_mel(y, chunk_frames=37) - passt_mel(y)).max() <= 1e-6
    for n in (513, 640, 641, 32000, 32001):
        assert passt_mel(y[:n]).shape == (n_frames(n), 128) == (1 + (n - 1) // 320, 128)


def test_definition_records_name_version_and_shape() -> None:
    passt, panns = feature_definition("passt"), feature_definition("panns")
    cfg = passt.cache_config()
    assert cfg["feature"] == "passt-mel" and cfg["feature_version"] and cfg["n_mels"] == passt.n_bins == 128
    assert passt.frames_per_second == panns.frames_per_second == 100.0
    assert cfg["fmax"] == DEFAULT_PASST_CONFIG.fmax == 15000.0
    assert panns.cache_config()["feature"] == "panns-logmel" and panns.n_bins == 64
    assert np.array_equal(passt.compute(load_mono(CLIPS[2])), passt_mel(load_mono(CLIPS[2])))

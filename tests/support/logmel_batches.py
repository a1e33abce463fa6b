"""Real log-mel batches for the trainer-core tests: the project's own feature definition on the bundled CC0 /
CC BY-SA clips (tests/data/audio), padded with the −100 dB floor exactly as the trainer's data code does."""
from __future__ import annotations

import functools

import torch

from audioret.pipeline.audio_io import file_log_mel
from support import AUDIO

# Mixed lengths on purpose: 599, 315, 92, 52 and 11 frames (the last is shorter than CNN10's 16-frame stride).
CLIPS = ("animals_cc0/dog.mp3", "animals_cc0/horse.mp3", "animals_cc0/sheep.mp3",
         "fsdd_ccbysa/1_jackson_0.wav", "sonic_pi_cc0/elec_beep.flac", "sonic_pi_cc0/loop_amen.flac")
FLOOR = -100.0


@functools.lru_cache(maxsize=None)
def _clip(name: str) -> torch.Tensor:
    return torch.from_numpy(file_log_mel(AUDIO / name)).float()


def real_logmel_batch(names: tuple[str, ...] = CLIPS, max_frames: int = 400,
                      pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (B, T, 64) float32 dB with floor padding, lengths (B,) long); clips cropped to `max_frames`."""
    mels = [_clip(n)[:max_frames] for n in names]
    lengths = torch.tensor([m.shape[0] for m in mels])
    t = pad_to or int(lengths.max())
    x = torch.full((len(mels), t, mels[0].shape[1]), FLOOR)
    for i, m in enumerate(mels):
        x[i, :m.shape[0]] = m
    return x, lengths

"""The bi-encoder: an audio encoder and a text encoder (trainer/encoders/) in one embedding space.

Why a wrapper: both towers' outputs are L2-normalised here, and the temperature lives here, so the loss
(trainer/loss.py) and evaluation see one interface whatever the encoders are.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audioret.trainer.config import TrainConfig
from audioret.trainer.encoders import build_audio_encoder, build_text_encoder


class BiEncoder(nn.Module):
    """Audio and text encoders with L2-normalised outputs and a logit scale (1/temperature).

    `logit_scale` is the *multiplier* applied to cosine similarities (exp of the stored `log_scale`), the value
    `trainer.loss.nt_xent` expects. Learned temperature is clamped at a scale of 100 as in CLIP.
    """

    MAX_SCALE = 100.0

    def __init__(self, audio: nn.Module, text: nn.Module, temperature: float = 0.07,
                 learn_temperature: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.audio, self.text = audio, text
        init = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_scale", init)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.MAX_SCALE)

    def encode_audio(self, x: torch.Tensor, lengths: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        return F.normalize(self.audio(x, lengths, generator), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.text(texts), dim=-1)

    def encode_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.normalize(self.text.forward_tokens(batch), dim=-1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, texts: list[str] | dict[str, torch.Tensor],
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ (audio_emb, text_emb, logit_scale); `texts` is a list of strings or a `tokenize` batch."""
        text = self.encode_tokens(texts) if isinstance(texts, dict) else self.encode_text(texts)
        return self.encode_audio(x, lengths, generator), text, self.logit_scale


def build_model(cfg: TrainConfig, n_mels: int = 64) -> BiEncoder:
    """The bi-encoder a config describes (trainer/encoders/: audio encoder by `audio_encoder`, pretrained text
    transformer from `text_model`; audio checkpoints are loaded by the training loop)."""
    return BiEncoder(build_audio_encoder(cfg, n_mels), build_text_encoder(cfg), temperature=cfg.temperature,
                     learn_temperature=cfg.learn_temperature)

"""The bi-encoder of Primus & Widmer (DCASE 2022 task 6b): CNN10 audio encoder + transformer text encoder.

Why the details matter: attribute names follow the PANNs Cnn10 state dict (`bn0.*`,
`conv_block1.conv1.weight`, `conv_block1.bn1.*`, ...) so the AudioSet checkpoint `Cnn10_mAP=0.380.pth` loads
as is; padded frames are zeroed before every convolution (exactly what the convolution's own zero padding does at a
clip's end) and masked out of the time pooling, so a clip's embedding does not depend on how much padding its batch
needed (exactly in eval mode; in train mode bn0's batch statistics skip padding too, while the conv blocks'
BatchNorms still count the zeroed padded frames).
"""
from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer.augment import spec_augment, valid_mask

CNN10_CHANNELS = (64, 128, 256, 512)
N_POOLS = len(CNN10_CHANNELS)  # each block halves time and frequency
PANNS_PREFIXES = ("bn0.",) + tuple(f"conv_block{i}." for i in range(1, N_POOLS + 1))


def _numpy_safe_globals() -> list:
    """numpy's array, scalar and dtype globals, each also under the name numpy 1.x pickles write.

    Why both spellings: numpy 2 moved `numpy.core` to `numpy._core`, and torch allow-lists a global by the
    module/qualname of the object it is given, i.e. the numpy-2 name only. PANNs' checkpoints were pickled in 2020
    with numpy 1.x and name `numpy.core.multiarray._reconstruct`: the same function, under its old address.
    """
    import numpy as np

    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    allowed: list = [np.ndarray, np.dtype]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    allowed += [type(np.dtype(t)) for t in ("int64", "int32", "float64", "float32", "uint32", "bool", "U8")]
    return allowed


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _load_checkpoint_weights_only(path: Path) -> Any:
    """torch.load(weights_only=True), also for PANNs' files, which store numpy arrays (the sampler state) next to
    the weights: plain numpy arrays and dtypes are allowed as data, nothing else is unpickled. A file that needs
    any other global is refused with a ModelLoadError naming that global (torch's own message would advise
    `weights_only=False`, i.e. running whatever the file contains)."""
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _REFUSED_GLOBAL.search(str(exc))
        if refused is None:
            raise
        raise ModelLoadError(f"{path}: refused: the checkpoint needs the global {refused.group(1)}, which a "
                             "weights-only load does not allow (only tensors and numpy arrays are read; nothing "
                             "in the file was run)") from None


class ModelLoadError(RuntimeError):
    """A checkpoint or pretrained text model could not be loaded; the message is one line naming the source."""


class ConvBlock(nn.Module):
    """PANNs ConvBlock: 2 × (3×3 conv without bias, BN, ReLU), then 2×2 average pooling; masks padded frames."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, F), mask (B, 1, T, 1) float; returns (B, C', T//2, F//2) (caller re-masks)."""
        x = F.relu(self.bn1(self.conv1(x * mask))) * mask
        x = F.relu(self.bn2(self.conv2(x))) * mask
        return F.avg_pool2d(x, kernel_size=2)


class AudioEncoder(nn.Module):
    """bn0 over mel bins → SpecAugment (train only) → CNN10 → masked (max + mean) time pooling → FC 2048 → FC out.

    `width` multiplies the CNN10 channels (e.g. 0.25 for CPU demos); PANNs weights only fit width 1. Dropout is the
    PANNs one (0.2 after each block, 0.5 before the first FC layer).
    """

    def __init__(self, n_mels: int = 64, width: float = 1.0, embed_dim: int = 1024, n_t: int = 0, w_t: int = 0,
                 n_f: int = 0, w_f: int = 0, hidden: int = 2048, block_dropout: float = 0.2,
                 head_dropout: float = 0.5) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"audio width must be > 0, got {width}")
        self.n_mels, self.width = n_mels, width
        self.n_t, self.w_t, self.n_f, self.w_f = n_t, w_t, n_f, w_f
        self.block_dropout, self.head_dropout = block_dropout, head_dropout
        channels = [max(1, round(c * width)) for c in CNN10_CHANNELS]
        self.bn0 = nn.BatchNorm2d(n_mels)
        ins = [1] + channels[:-1]
        for i, (cin, cout) in enumerate(zip(ins, channels), start=1):
            self.add_module(f"conv_block{i}", ConvBlock(cin, cout))
        self.fc1 = nn.Linear(channels[-1], hidden)
        self.fc2 = nn.Linear(hidden, embed_dim)
        self.embed_dim = embed_dim

    def blocks(self) -> list[ConvBlock]:
        return [getattr(self, f"conv_block{i}") for i in range(1, N_POOLS + 1)]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """x (B, T, n_mels) dB log-mels (padding anywhere after `lengths`), lengths (B,) long → (B, embed_dim).

        `generator` drives SpecAugment (train mode only); None uses torch's global RNG.
        """
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise ValueError(f"expected (batch, frames, {self.n_mels}) log-mels, got {tuple(x.shape)}")
        lengths = lengths.to(x.device).clamp(min=1, max=x.shape[1])
        x = self._bn0(x, lengths)
        if self.training:
            x = spec_augment(x, self.n_t, self.w_t, self.n_f, self.w_f, generator, lengths=lengths)
        min_frames = 2 ** N_POOLS  # a shorter input would pool to zero frames; the extra frames are masked
        if x.shape[1] < min_frames:
            x = F.pad(x, (0, 0, 0, min_frames - x.shape[1]))
        x = x.unsqueeze(1)  # (B, 1, T, F)
        for block in self.blocks():
            mask = valid_mask(lengths, x.shape[2]).to(x.dtype)[:, None, :, None]
            x = F.dropout(block(x, mask), p=self.block_dropout, training=self.training)
            lengths = torch.div(lengths, 2, rounding_mode="floor")
        x = x.mean(dim=3)  # over frequency → (B, C, T')
        keep = valid_mask(lengths.clamp(min=1), x.shape[2]).unsqueeze(1)  # < 16 frames: first frame only
        x_max = x.masked_fill(~keep, float("-inf")).amax(dim=2)
        x_mean = (x * keep).sum(dim=2) / keep.sum(dim=2)
        x = F.dropout(x_max + x_mean, p=self.head_dropout, training=self.training)
        return self.fc2(F.relu(self.fc1(x)))

    def _bn0(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """BatchNorm over mel bins. In training the batch statistics use valid frames only: floor padding
        (−100 dB) would otherwise drag the mean and inflate the variance of padded batches. Eval mode (and the
        state dict) is plain `nn.BatchNorm2d`, so PANNs' bn0 loads as is."""
        bn = self.bn0
        if not (self.training and bn.track_running_stats):
            return bn(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
        keep = valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        n = keep.sum()
        mean = (x * keep).sum(dim=(0, 1)) / n
        var = (((x - mean) * keep) ** 2).sum(dim=(0, 1)) / n
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), momentum)
            unbiased = var.detach() * n / (n - 1).clamp(min=1)
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), momentum)
        return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias

    def load_panns_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """Load bn0 and the conv blocks from a PANNs Cnn10 checkpoint ({"model": state_dict} or a bare one).

        Returns {"source", "loaded", "missing", "unexpected", "mismatched"}: keys copied; model keys of bn0/conv
        blocks absent from the file (num_batches_tracked ignored); file keys not used (PANNs' STFT, fc1,
        fc_audioset, ...); and (key, file shape, model shape) triples skipped. Raises ModelLoadError when nothing
        fits, and ValueError for width != 1 (the channel counts cannot match).
        """
        path = Path(path)
        if not path.is_file():  # before the width: "missing" is the first thing to fix, whatever the width
            raise ModelLoadError(f"{path}: checkpoint not found")
        if self.width != 1:
            raise ValueError(f"{path}: PANNs weights need audio width 1, this encoder has width {self.width}")
        try:
            state = _load_checkpoint_weights_only(path)
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line naming the file is the contract
            raise ModelLoadError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})".splitlines()[0])
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        if not isinstance(state, dict):
            raise ModelLoadError(f"{path}: not a state dict (got {type(state).__name__})")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        own = {k: v for k, v in self.state_dict().items() if k.startswith(PANNS_PREFIXES)}
        loaded, mismatched, unexpected = [], [], []
        update = {}
        for key, value in state.items():
            if key not in own:
                unexpected.append(key)
            elif not torch.is_tensor(value) or value.shape != own[key].shape:
                mismatched.append((key, list(getattr(value, "shape", [])), list(own[key].shape)))
            else:
                update[key] = value
                loaded.append(key)
        missing = [k for k in own if k not in update and not k.endswith("num_batches_tracked")]
        if not loaded:
            raise ModelLoadError(f"{path}: no CNN10 keys (bn0.*, conv_block*.*) match this model")
        self.load_state_dict(update, strict=False)
        return {"source": str(path), "loaded": sorted(loaded), "missing": sorted(missing),
                "unexpected": sorted(unexpected), "mismatched": mismatched}


def _load_pretrained(model_name_or_path: str) -> tuple[nn.Module, Any]:
    """AutoModel + AutoTokenizer by hub name or local folder, without the (unused) pooler when the model has one."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the load report lists the dropped pooler: noise, not a problem
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        try:
            model = AutoModel.from_pretrained(model_name_or_path, add_pooling_layer=False)
        except TypeError:
            model = AutoModel.from_pretrained(model_name_or_path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"text model {model_name_or_path!r}: cannot load ({first})") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # [CLS] of the last layer is used; an unused pooler would trip DDP's unused-param check
    return model, tokenizer


class TextEncoder(nn.Module):
    """Transformer text encoder: tokenise (pad to the batch's longest, truncate to `max_tokens`), take the last
    layer's [CLS] vector, project with an MLP (hidden 2048, ReLU) to `embed_dim`."""

    def __init__(self, model_name_or_path: str = "bert-base-uncased", embed_dim: int = 1024, hidden: int = 2048,
                 max_tokens: int = 32) -> None:
        super().__init__()
        self.model_name_or_path = str(model_name_or_path)
        self.max_tokens = max_tokens
        self.transformer, self.tokenizer = _load_pretrained(self.model_name_or_path)
        width = int(self.transformer.config.hidden_size)
        self.proj = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, embed_dim))
        self.embed_dim = embed_dim

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids + attention mask on CPU (move with `forward_tokens`); usable in DataLoader workers."""
        if isinstance(texts, str):
            raise TypeError("tokenize expects a list of strings, got one string")
        batch = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")
        return dict(batch)

    def forward_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised batch (any device) → (B, embed_dim) unnormalised embeddings."""
        device = self.proj[0].weight.device
        batch = {k: v.to(device) for k, v in batch.items()}
        out = self.transformer(**batch)
        return self.proj(out.last_hidden_state[:, 0])

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.forward_tokens(self.tokenize(texts))


class BiEncoder(nn.Module):
    """Audio and text encoders with L2-normalised outputs and a logit scale (1/temperature).

    `logit_scale` is the *multiplier* applied to cosine similarities (exp of the stored `log_scale`), the value
    `trainer.loss.nt_xent` expects. Learned temperature is clamped at a scale of 100 as in CLIP.
    """

    MAX_SCALE = 100.0

    def __init__(self, audio: AudioEncoder, text: TextEncoder, temperature: float = 0.07,
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

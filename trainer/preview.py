"""What training sees, for a person: cached log-mels before and after the augmentation chain (a PNG), and
captions with their back-translations and augmented draws.

Why: augmentation bugs (wrong axis, gain on padding, stripes wider than asked) are invisible in a loss curve but
obvious in a spectrogram. The chain is the training one (crop, gain, Freq-MixStyle, SpecAugment), except that the
stripes the model zero-fills after bn0 are drawn at each clip's per-bin mean in dB, so the picture stays readable.
Caption draws come from the trainer's own TextAugmenter.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from audioret.trainer.augment import augment_batch, spec_augment
from audioret.trainer.config import TrainConfig, resolve_split
from audioret.trainer.data import crop_windows, pad_arrays
from audioret.trainer.encoders import feature_spec
from audioret.trainer.sources import check_audio_config


def render_audio_preview(cfg: TrainConfig, cache_root: Path, name: str | None, out_file: Path, n_clips: int = 4,
                         split: str = "train", seed: int | None = None) -> Path:
    """Write a PNG with one row per clip: original (cropped) log-mel | augmented log-mel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from audioret.trainer.sources import open_audio_cache

    audio = open_audio_cache(cache_root, name, encoder=cfg.audio_encoder)
    fps = check_audio_config(audio.config, str(audio.directory), cfg.audio_encoder)
    scale = feature_spec(cfg.audio_encoder).scale
    seed = cfg.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    idx = audio.indices_for_split(resolve_split(split, set(audio.splits)))
    pick = np.sort(rng.choice(idx, size=min(n_clips, len(idx)), replace=False))
    starts, sizes = crop_windows(audio.lengths()[pick], max(1, int(round(cfg.max_seconds * fps))), rng)
    arrays = [np.asarray(audio.get(int(i))[s:s + n], dtype=np.float32)
              for i, s, n in zip(pick, starts, sizes, strict=True)]
    x_np, lengths_np = pad_arrays(arrays, audio.n_mels, floor=scale.floor)
    x, lengths = torch.from_numpy(x_np), torch.from_numpy(lengths_np)
    gen = torch.Generator().manual_seed(seed)
    aug = augment_batch(x, lengths, cfg, gen, scale)
    keep = spec_augment(torch.ones_like(aug), cfg.n_t, cfg.w_t, cfg.n_f, cfg.w_f, gen, lengths=lengths)
    valid = (torch.arange(x.shape[1]).view(1, -1) < lengths.view(-1, 1)).unsqueeze(-1)
    mean = (aug * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
    shown = torch.where(keep > 0, aug, mean.expand_as(aug))

    fig, axes = plt.subplots(len(pick), 2, figsize=(12, 2.2 * len(pick)), squeeze=False)
    for row, i in enumerate(pick):
        n = int(lengths[row])
        for col, (data, title) in enumerate(((x[row, :n], "cached"), (shown[row, :n], "augmented"))):
            ax = axes[row, col]
            ax.imshow(data.T.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-100,
                      vmax=max(0.0, float(x.max())),
                      extent=(0, n / fps, 0, audio.n_mels))
            ax.set_title(f"{audio.clip_ids[int(i)]} — {title}", fontsize=8)
            ax.set_ylabel("mel bin")
    for ax in axes[-1]:
        ax.set_xlabel("seconds")
    fig.suptitle(f"g_max={cfg.g_max} p_ms={cfg.p_ms} α={cfg.ms_alpha} n_t={cfg.n_t} w_t={cfg.w_t} "
                 f"n_f={cfg.n_f} w_f={cfg.w_f} max_seconds={cfg.max_seconds}", fontsize=9)
    fig.tight_layout()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=80)
    plt.close(fig)
    return out_file


@dataclass
class CaptionDraws:
    """One caption of a clip: as given, in the form the model trains on, per pivot its back-translation (as
    cached), and augmented draws."""

    raw: str
    trained_form: str
    back_translations: dict[str, str]
    draws: list[str]


@dataclass
class CaptionPreview:
    """The previewed captions cache and, per clip shown (sorted by id), its split and captions."""

    directory: Path
    backend: str
    pivots: list[str]
    clips: list[tuple[str, str, list[CaptionDraws]]]


def caption_preview(cache_root: Path, name: str | None, key: str | None, n_clips: int, draws: int,
                    probabilities: Mapping[str, float], text_normalisation: str = "audioret",
                    seed: int = 0) -> CaptionPreview:
    """`n_clips` random clips of a captions cache with `draws` augmented draws per caption, on the caption form
    `text_normalisation` trains on (trainer/caption_text.py).

    `probabilities`: p_eda, p_syn, p_swp, p_del, p_ins and p_bt (p_bt counts as 0 for a cache without
    back-translations). The clip choice and the draws follow from `seed` alone.
    """
    from audioret.cache.caption_shards import CaptionCache
    from audioret.trainer.caption_text import caption_view
    from audioret.trainer.eda import EDA, TextAugmenter, vocabulary_of

    p = probabilities
    cc = CaptionCache.open(cache_root, name=name, key=key)
    seen = caption_view(cc, text_normalisation)  # what the text encoder trains on
    train_ids = cc.ids_for_split("development") or cc.ids_for_split("train") or cc.clip_ids
    vocab = vocabulary_of(c for cid in train_ids for c in seen.captions(cid))
    eda = EDA(vocab, p["p_eda"], p["p_syn"], p["p_swp"], p["p_del"], p["p_ins"], seed=seed)
    rng = random.Random(seed)
    aug = TextAugmenter(seen, p["p_bt"] if cc.backend != "none" else 0.0, eda)
    clips = []
    for cid in sorted(rng.sample(cc.clip_ids, min(n_clips, len(cc.clip_ids)))):
        bts = cc.back_translations(cid)
        rows = [CaptionDraws(raw, cap, {pivot: bts[pivot][i] for pivot in cc.pivots},
                             [aug.pick(cid, i, rng) for _ in range(draws)])
                for i, (raw, cap) in enumerate(zip(cc.raw(cid), seen.captions(cid), strict=False))]
        clips.append((cid, cc.splits[cc.index_of(cid)], rows))
    return CaptionPreview(cc.directory, cc.backend, list(cc.pivots), clips)

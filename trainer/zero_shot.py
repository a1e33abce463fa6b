"""`audioret eval --zero-shot <CLAP name or path>`: a pretrained CLAP scored as it is, the reference a trained run
is compared against.

Why through the same code as a trained run: clips from a cache prepped with `--features hf:<same name>`, captions
from the same caption cache, and the same scoring and report writing, so the numbers compare. Both towers are
CLAP's own, untouched, on inputs rebuilt deterministically from the cache (trainer/encoders/hf_inputs.py) and on
each caption verbatim, as `ClapProcessor(text=caption)` tokenises it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from audioret.cache.feature_contract import FeatureSpec
from audioret.trainer.caption_text import verbatim_captions
from audioret.trainer.config import resolve_split
from audioret.trainer.device import resolve_device
from audioret.trainer.encoders.hf import check_clap_pair, hf_feature_spec, load_feature_extractor
from audioret.trainer.encoders.hf_inputs import ClapBatching
from audioret.trainer.encoders.loading import ModelLoadError, model_load_error, quiet_transformers
from audioret.trainer.evaluate import SplitScores, check_writable, score_split, write_eval_reports
from audioret.trainer.models import BiEncoder
from audioret.trainer.relevance import Relevance

ROBERTA_POSITION_OFFSET = 2  # CLAP's text model numbers positions from padding_idx + 1, as RoBERTa does


class ClapAudioTower(nn.Module):
    """CLAP's audio side as an audio encoder (trainer/encoders/__init__.py contract): cached log-mels →
    `get_audio_features`. Always deterministic (evaluation only)."""

    def __init__(self, clap: nn.Module, spec: FeatureSpec, batching: ClapBatching) -> None:
        super().__init__()
        self.clap, self.batching = clap, batching
        self.n_mels, self.scale = spec.n_mels, spec.scale
        self.embed_dim = int(clap.config.projection_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        features, is_longer = self.batching(x, lengths)
        return self.clap.get_audio_features(input_features=features, is_longer=is_longer).pooler_output


class ClapTextTower(nn.Module):
    """CLAP's text side: its tokenizer (padding to the batch's longest, truncation at the model's positions) →
    `get_text_features`."""

    def __init__(self, clap: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.clap, self.tokenizer = clap, tokenizer
        self.embed_dim = int(clap.config.projection_dim)
        positions = int(clap.config.text_config.max_position_embeddings) - ROBERTA_POSITION_OFFSET
        self.max_tokens = min(positions, int(getattr(tokenizer, "model_max_length", positions)))

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")
        device = next(self.clap.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        return self.clap.get_text_features(**batch).pooler_output


def load_zero_shot_clap(source: str) -> BiEncoder:
    """Both towers of the pretrained ClapModel at `source` (hub name or local folder) with its tokenizer and
    feature extractor, as a BiEncoder in eval mode; ModelLoadError naming the model when it is not a CLAP."""
    from transformers import AutoConfig, AutoTokenizer, ClapModel

    what = f"hf:{source}"
    extractor = load_feature_extractor(source)
    if type(extractor).__name__ != "ClapFeatureExtractor":
        raise ModelLoadError(f"zero-shot model {what!r}: needs a CLAP (text and audio towers), its feature "
                             f"extractor is a {type(extractor).__name__}")
    try:
        with quiet_transformers():
            model_type = AutoConfig.from_pretrained(source).model_type
            if model_type != "clap":
                raise ModelLoadError(f"zero-shot model {what!r}: needs a full CLAP (model type clap, text and "
                                     f"audio towers), got {model_type}")
            clap = ClapModel.from_pretrained(source)
            tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise model_load_error("zero-shot model", what, exc) from None
    spec, batching = hf_feature_spec(source), ClapBatching.from_extractor(extractor)
    check_clap_pair(source, clap.config.audio_config, batching, spec.n_mels)
    return BiEncoder(ClapAudioTower(clap, spec, batching), ClapTextTower(clap, tokenizer)).eval()


def score_zero_shot(model: str, cache_root: str | Path, name: str | None, split: str = "evaluation",
                    device: str = "auto", relevance: Relevance | None = None,
                    batch_size: int = 64) -> tuple[str, SplitScores]:
    """(the cache's split name, its scores) of the pretrained CLAP `model` ("<name or path>" or "hf:<...>") on
    the caches named `name` under `cache_root`: the audio cache must hold `hf:<model>` features."""
    from audioret.trainer.sources import open_caches

    source = model.strip().removeprefix("hf:").strip()
    audio, captions = open_caches(Path(cache_root), name, None, None, f"hf:{source}")  # refuses other features
    captions = verbatim_captions(captions)  # CLAP's tokenizer reads the caption as written
    split_name = resolve_split(split, set(audio.splits))
    torch_device = resolve_device(device)
    bi_encoder = load_zero_shot_clap(source).to(torch_device)
    return split_name, score_split(bi_encoder, audio, captions, split_name, torch_device, batch_size, relevance)


def evaluate_zero_shot(model: str, cache_root: str | Path, name: str | None, out_dir: str | Path,
                       split: str = "evaluation", device: str = "auto", relevance: Relevance | None = None,
                       batch_size: int = 64) -> dict[str, Any]:
    """Score the pretrained CLAP `model` (`score_zero_shot`); writes eval-<split>.json and submission-<split>.csv
    into `out_dir` and returns the metrics."""
    source = model.strip().removeprefix("hf:").strip()
    out = Path(out_dir)
    check_writable(out, "choose another --out DIR", create=True)
    split_name, scores = score_zero_shot(source, cache_root, name, split, device, relevance, batch_size)
    return write_eval_reports(out, split, split_name, scores, checkpoint="zero-shot", model=f"hf:{source}")

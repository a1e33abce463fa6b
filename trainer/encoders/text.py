"""Transformer text encoder (BERT in the paper, RoBERTa-large in the DCASE 2025 baseline) with a projection head.

Why the pooler is dropped: the last layer's first-token vector ([CLS] / <s>) is the sentence embedding; an unused
pooler would trip DDP's unused-parameter check.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from audioret.trainer.encoders.loading import check_model_source, model_load_error, quiet_transformers

#: The config attributes that hold a transformers encoder's dropout rates (BERT/RoBERTa names, then DistilBERT's).
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def _load_pretrained(model_name_or_path: str, dropout: float | None = None) -> tuple[nn.Module, Any]:
    """AutoModel + AutoTokenizer by hub name or local folder, without the (unused) pooler when the model has one.

    `dropout` (None: the model's own) overrides every dropout rate its config has (`DROPOUT_KEYS`): the DCASE 2025
    baseline fine-tunes RoBERTa-large with 0.2 instead of its 0.1."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    check_model_source("text model", model_name_or_path)
    try:
        with quiet_transformers():  # the load report lists the dropped pooler: noise, not a problem
            tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
            config = AutoConfig.from_pretrained(model_name_or_path)
            if dropout is not None:
                overridden = [k for k in DROPOUT_KEYS if isinstance(getattr(config, k, None), float)]
                if not overridden:
                    raise ValueError(f"text_dropout: the {type(config).__name__} has none of "
                                     f"{', '.join(DROPOUT_KEYS)}")
                for key in overridden:
                    setattr(config, key, float(dropout))
            try:
                model = AutoModel.from_pretrained(model_name_or_path, config=config, add_pooling_layer=False)
            except TypeError:
                model = AutoModel.from_pretrained(model_name_or_path, config=config)
    except (OSError, ValueError) as exc:
        raise model_load_error("text model", model_name_or_path, exc) from exc
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # [CLS] of the last layer is used; an unused pooler would trip DDP's unused-param check
    return model, tokenizer


def token_limit(model: nn.Module, tokenizer: Any) -> int | None:
    """Tokens per text `model` takes: its position embeddings less the positions a RoBERTa-like model reserves
    before the first token (its embeddings' padding_idx + 1), at most the tokenizer's model_max_length; None when
    the model says nothing about positions."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is None:
        return None
    padding_idx = getattr(getattr(model, "embeddings", None), "padding_idx", None)
    limit = int(positions) - (int(padding_idx) + 1 if isinstance(padding_idx, int) else 0)
    stated = getattr(tokenizer, "model_max_length", None)
    return min(limit, int(stated)) if isinstance(stated, int) and 0 < stated < 10**6 else limit


def projection_head(kind: str, width: int, embed_dim: int, hidden: int = 2048) -> nn.Sequential:
    """"mlp": Linear(width, hidden) → ReLU → Linear(hidden, embed_dim) (the paper); "linear": one Linear (the DCASE
    2025 baseline). A Sequential either way, so the first layer is `proj[0]` in both state dicts."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, embed_dim))
    if kind == "linear":
        return nn.Sequential(nn.Linear(width, embed_dim))
    raise ValueError(f"projection must be mlp or linear, got {kind!r}")


class TextEncoder(nn.Module):
    """Transformer text encoder: tokenise (pad to the batch's longest, truncate to `max_tokens`), take the last
    layer's first-token vector ([CLS] for BERT, <s> for RoBERTa), project to `embed_dim` (`projection_head`)."""

    def __init__(self, model_name_or_path: str = "bert-base-uncased", embed_dim: int = 1024, hidden: int = 2048,
                 max_tokens: int = 32, projection: str = "mlp", dropout: float | None = None) -> None:
        super().__init__()
        self.model_name_or_path = str(model_name_or_path)
        self.max_tokens = max_tokens
        self.transformer, self.tokenizer = _load_pretrained(self.model_name_or_path, dropout)
        limit = token_limit(self.transformer, self.tokenizer)
        if limit is not None and max_tokens > limit:  # else a long caption fails mid-run on a position index
            from audioret.trainer.config import ConfigError

            raise ConfigError(f"config key 'max_tokens': {max_tokens} is more than the text model "
                              f"{self.model_name_or_path!r} takes ({limit} tokens); use --set max_tokens={limit} "
                              "or less")
        width = int(self.transformer.config.hidden_size)
        self.proj = projection_head(projection, width, embed_dim, hidden)
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

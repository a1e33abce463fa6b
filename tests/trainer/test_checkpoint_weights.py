"""What checkpoints store: a frozen text encoder by name (checked by sha256 on load), weights otherwise exactly.

Real models: CNN10 at a small width and the packaged all-MiniLM-L6-v2 (loaded offline from site-packages)."""
from __future__ import annotations

import pytest
import torch

from audioret.trainer.checkpoint import (
    TEXT_PREFIX,
    CheckpointError,
    frozen_text_record,
    load_checkpoint,
    load_model_state,
    model_weights,
    save_checkpoint,
    weights_sha256,
)
from audioret.trainer.config import TrainConfig
from audioret.trainer.models import build_model
from support.demo import minilm_path


def _model(seed: int):
    torch.manual_seed(seed)
    return build_model(TrainConfig(text_model=minilm_path(), audio_width=0.125, embed_dim=64, text_lr=0.0))


def test_frozen_text_encoder_is_stored_by_name_and_loads_back_exactly(tmp_path):
    trained, fresh = _model(0), _model(1)
    pretrained = weights_sha256(trained.text.transformer)
    record = frozen_text_record(trained, minilm_path(), pretrained)
    assert record == {"text_model": minilm_path(), "sha256": pretrained}
    weights = model_weights(trained, record)
    assert not any(k.startswith(TEXT_PREFIX) for k in weights) and "text.proj.0.weight" in weights
    path = save_checkpoint(tmp_path / "best.pt", {"model": weights, "frozen_text": record})
    assert path.stat().st_size < 0.2 * sum(t.numel() * t.element_size() for t in trained.state_dict().values())

    assert not torch.equal(fresh.text.proj[0].weight, trained.text.proj[0].weight)
    load_model_state(fresh, load_checkpoint(path), path)
    want, got = trained.state_dict(), fresh.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)

    with torch.no_grad():  # the named model now loads other weights: refuse rather than evaluate something else
        fresh.text.transformer.embeddings.word_embeddings.weight[0, 0] += 1.0
    with pytest.raises(CheckpointError, match="stored by name"):
        load_model_state(fresh, load_checkpoint(path), path)


def test_text_weights_are_copied_when_they_are_not_the_pretrained_ones():
    model = _model(0)
    pretrained = weights_sha256(model.text.transformer)
    assert frozen_text_record(model, minilm_path(), None) is None  # text_lr > 0: trained, so always copied
    with torch.no_grad():  # e.g. --init-from a run that fine-tuned the transformer, now frozen
        model.text.transformer.encoder.layer[0].output.dense.bias += 0.01
    assert frozen_text_record(model, minilm_path(), pretrained) is None
    assert any(k.startswith(TEXT_PREFIX) for k in model_weights(model, None))

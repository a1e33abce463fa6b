"""`audioret train --init-from RUN_DIR`: start a run from another run's best weights (transfer learning).

Why: the paper's last row pretrains on AudioCaps and fine-tunes on Clotho with the learning rate × 0.1. Only the
model weights are taken (not optimiser, scheduler or epoch: the new run starts at epoch 1 with its own config),
and the source is recorded in the new run's config (`init_from`) and in `init_from.json` so a result can always
be traced back to its pretraining run.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audioret.trainer.checkpoint import CheckpointError, full_model_state, removed_reason


class InitFromError(RuntimeError):
    """The source run cannot provide weights for this model (missing checkpoint, different architecture)."""


def source_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """RUN_DIR/checkpoints/{best,last}.pt, or a .pt file given directly."""
    path = Path(run_dir)
    if path.is_file():
        return path
    ckpt = path / "checkpoints" / f"{which}.pt"
    if not ckpt.is_file():
        why = removed_reason(ckpt) or " (is this a finished `audioret train` run?)"
        raise InitFromError(f"{run_dir}: no checkpoints/{which}.pt{why}")
    return ckpt


def load_init_weights(model: nn.Module, run_dir: str | Path, which: str = "best") -> dict[str, Any]:
    """Copy the source run's model weights into `model`; returns a record for the new run's config/run files.

    Shapes must match exactly (same audio width, embed_dim, text model): a silent partial load would make the
    transfer experiment meaningless, so any missing, unexpected or mis-shaped tensor is an error naming it.
    """
    ckpt = source_checkpoint(run_dir, which)
    try:
        payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / foreign files
        raise InitFromError(f"{ckpt}: cannot load checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(payload, dict):
        raise InitFromError(f"{ckpt}: no 'model' state dict in the checkpoint")
    try:  # a frozen text encoder stored by name: this model must have loaded the same one (then it is "copied")
        state = full_model_state(model, payload, ckpt)
    except CheckpointError as exc:
        raise InitFromError(str(exc)) from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        parts = [f"{label} {items[0]!r} (+{len(items) - 1} more)" for label, items in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if items]
        raise InitFromError(f"{ckpt}: weights do not fit this model: {'; '.join(parts)} "
                            "(audio_width, embed_dim and text_model must match the source run)")
    model.load_state_dict(state)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    return {"init_from": str(Path(run_dir).resolve()), "checkpoint": str(ckpt.resolve()), "sha256": digest,
            "source_epoch": payload.get("epoch"), "source_best_map10": payload.get("best_map10")}

"""Optimiser and learning-rate schedule: the paper's Adam + step decay, or the DCASE 2025 baseline's AdamW with a
linear warm-up and a cosine decay.

Why the cosine schedule is stepped per batch from a step counter kept in the checkpoint: a resumed run continues
the exact same curve. The curve is laid out on a nominal number of steps per epoch and multiplies each parameter
group's base rate, so a text transformer at its own text_lr follows the same shape. The formula:
docs/training.md.
"""
from __future__ import annotations

import math
from typing import Any

import torch


def make_torch_optimizer(model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """Adam (paper) or AdamW (baseline) with two groups: the pretrained text transformer at text_lr, everything
    else (audio encoder, projection heads, a learned temperature) at lr. text_lr = 0 freezes the transformer (no
    gradients computed for it). Betas (0.9, 0.999) and eps 1e-8 are torch's defaults and the baseline's."""
    text_params = list(model.text.transformer.parameters())
    text_ids = {id(p) for p in text_params}
    other = [p for p in model.parameters() if id(p) not in text_ids and p.requires_grad]
    groups = [{"params": other, "lr": cfg.lr, "name": "main"}]
    if cfg.effective_text_lr() > 0:
        groups.append({"params": text_params, "lr": cfg.effective_text_lr(), "name": "text"})
    else:
        for p in text_params:
            p.requires_grad_(False)
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, weight_decay=cfg.weight_decay, foreach=True)  # foreach: one fused pass, much faster on CPU


def decay_epochs(cfg: Any) -> float:
    """Epochs of the cosine decay after the warm-up: `decay_epochs`, or (None) the rest of the run."""
    return float(cfg.decay_epochs) if cfg.decay_epochs is not None else max(cfg.epochs - cfg.warmup_epochs, 0.0)


def cosine_factor(epoch_position: float, cfg: Any) -> float:
    """The multiplier of each group's base lr after `epoch_position` epochs of training (0 = first step): the
    curve of the module docstring divided by lr (floor = min_lr / lr)."""
    warmup, decay = float(cfg.warmup_epochs), decay_epochs(cfg)
    floor = min(1.0, cfg.min_lr / cfg.lr) if cfg.lr > 0 else 0.0
    if warmup > 0 and epoch_position < warmup:
        return floor + (1.0 - floor) * epoch_position / warmup
    progress = min(max((epoch_position - warmup) / decay, 0.0), 1.0) if decay > 0 else 1.0
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def resume_problem(saved: Any, cfg: Any) -> str | None:
    """Why `cfg` cannot continue a run saved with config `saved` as far as the schedule goes, or None.

    `epochs` may change on resume (the run is extended or shortened) — except when the cosine decays over the
    run's own length (decay_epochs unset): a new length would change the learning rate of every remaining step,
    so the result would be neither the old run nor a fresh one of the new length."""
    if cfg.schedule != "cosine" or cfg.decay_epochs is not None or saved.epochs == cfg.epochs:
        return None
    return (f"--resume with epochs {saved.epochs} → {cfg.epochs}: schedule=cosine decays over the run's epochs, so "
            f"the learning rate of every remaining step would change; start a new run (--init-from can take this "
            f"one's weights), or give new runs a fixed decay_epochs so that they can be extended")


class Schedule:
    """The lr schedule of a run; `after_step()` after every optimiser step, `after_epoch()` after every epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: Any, steps_per_epoch: int) -> None:
        self.per_step = cfg.schedule == "cosine"
        if self.per_step:
            steps = max(1, int(steps_per_epoch))
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: cosine_factor(step / steps, cfg))
        else:
            self.scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)

    def after_step(self) -> None:
        if self.per_step:
            self.scheduler.step()

    def after_epoch(self) -> None:
        if not self.per_step:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)

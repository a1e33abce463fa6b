"""Optimiser and learning-rate schedule: the paper's Adam + step decay, or the DCASE 2025 baseline's AdamW with a
linear warm-up and a cosine decay.

Why the cosine schedule is stepped per batch from a step counter (torch's LambdaLR, whose counter is in the
checkpoint): a resumed run then continues the exact same curve. The curve is laid out on a nominal number of steps
per epoch (every caption once per epoch at the global batch size); an epoch whose plan has a batch more or less
shifts the curve by that step, never more.
"""
from __future__ import annotations

import math
from typing import Any

import torch


def make_optimizer(model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """Adam (paper) or AdamW (baseline) with two groups: the pretrained text transformer at text_lr, everything
    else (audio encoder, projection heads, a learned temperature) at lr. text_lr = 0 freezes the transformer (no
    gradients computed for it)."""
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


def cosine_factor(epoch_position: float, cfg: Any) -> float:
    """The multiplier of each group's base lr after `epoch_position` epochs of training (0 = first step):
    linear from 0 to 1 over `warmup_epochs`, then half a cosine down to min_lr / lr at `epochs`."""
    warmup, total = float(cfg.warmup_epochs), float(cfg.epochs)
    if warmup > 0 and epoch_position < warmup:
        return epoch_position / warmup
    floor = min(1.0, cfg.min_lr / cfg.lr) if cfg.lr > 0 else 0.0
    span = max(total - warmup, 1e-9)
    progress = min(max((epoch_position - warmup) / span, 0.0), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


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

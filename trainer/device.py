"""Which device a run computes on, and the precision it computes in there.

Why a module of its own: training (trainer/loop.py), evaluation (trainer/evaluate.py), zero-shot scoring and the
benchmarks must pick the device and the autocast the same way, or validation would not predict evaluation.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA when torch sees a GPU, else the CPU; a named CUDA device without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def autocast(device: torch.device) -> ContextManager:
    """bf16 autocast on CUDA (the paper's GPU recipe); full fp32 on CPU, where bf16 is slow and not needed."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()

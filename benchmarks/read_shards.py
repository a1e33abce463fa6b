"""Shard random access vs one HDF5 dataset per clip, same clips, same run.

Writes N synthetic-length clips (float16 log-mel-shaped data, 10–30 s = 1000–3000 frames) both ways, then reads
them in a random order, warm (after one pass), copying each clip into memory. Prints clips/s and the ratio.
Targets (issue 2): shard reader ≥ 20,000 clips/s warm and ≥ 5× the per-clip layout.

    python benchmarks/read_shards.py --clips 2000
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from cache.audio_shards import AudioCache, build_audio_cache
from cache.manifest import cache_dir_for
from pipeline.features import DEFAULT_CONFIG


def build(root: Path, n: int, shard_size: int, rng: np.random.Generator) -> tuple[Path, Path]:
    ids = [f"clip_{i:06d}.wav" for i in range(n)]
    lengths = rng.integers(1000, 3001, size=n)
    feats = {c: rng.normal(-40, 20, size=(int(t), 64)).astype(np.float16) for c, t in zip(ids, lengths)}
    m = build_audio_cache(root, feats, DEFAULT_CONFIG.to_dict(), name="bench", dataset="bench",
                          durations={c: 10.0 for c in ids}, shard_size=shard_size)
    d = cache_dir_for(root, "audio", m.key)
    per_clip = root / "per_clip.h5"
    with h5py.File(per_clip, "w") as f:
        for c in ids:
            f.create_dataset(c, data=feats[c])
    return d, per_clip


def rate(fn, order) -> float:
    fn(order)  # warm pass
    t = time.perf_counter()
    fn(order)
    return len(order) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--crop-frames", type=int, default=1000,
                    help="frames read per clip at a random start (1000 = the trainer's 10 s crop); 0 = whole clip")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir, per_clip = build(Path(tmp), args.clips, args.shard_size, rng)
        order = rng.permutation(args.clips)
        cache = AudioCache(cache_dir)

        crop = args.crop_frames
        starts = rng.integers(0, 1000 - crop + 1, size=args.clips) if crop else None

        def shard_reads(idx):
            for i in idx:
                view = cache.get(int(i))
                np.array(view[starts[i]:starts[i] + crop] if crop else view)

        with h5py.File(per_clip, "r") as f:
            names = cache.clip_ids

            def per_clip_reads(idx):
                for i in idx:
                    ds = f[names[i]]
                    ds[starts[i]:starts[i] + crop] if crop else ds[()]

            shard_rate = rate(shard_reads, order)
            per_clip_rate = rate(per_clip_reads, order)
    what = f"random {crop}-frame crop per clip (the trainer's read)" if crop else "whole clips"
    print(f"clips: {args.clips} (10-30 s), shard size {args.shard_size}, random order, warm, {what}")
    print(f"shard memmap reader : {shard_rate:10.0f} clips/s   (target >= 20000)")
    print(f"one dataset per clip: {per_clip_rate:10.0f} clips/s")
    print(f"ratio               : {shard_rate / per_clip_rate:10.1f}x  (target >= 5x)")


if __name__ == "__main__":
    main()

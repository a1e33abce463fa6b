"""Shard random access vs one HDF5 dataset per clip, same clips, same run.

Writes N synthetic-length clips (float16 log-mel-shaped data, 10–30 s = 1000–3000 frames) both ways, then reads
them in a random order, warm (after one pass), copying each clip into memory. Prints clips/s and the ratio.
Targets (issue 2): shard reader ≥ 20,000 clips/s warm and ≥ 5× the per-clip layout.

`--verify` measures instead what the readers' payload check (cache/integrity.py) adds to the first read of a
Clotho-size cache (~1 GB of float16, 15–30-s clips): open + read every shard into RAM (what resident training
does) without the check, with the fast xxh3 check, and the sha256 fallback of shards that predate it. Warm page
cache (one untimed pass first), so the ratio shows the check's CPU cost, not the disk's.

    python benchmarks/read_shards.py --clips 2000
    python benchmarks/read_shards.py --verify --verify-gb 1.0
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from audioret.cache.audio_shards import AudioCache, build_audio_cache
from audioret.cache.integrity import forget_verified
from audioret.cache.manifest import cache_dir_for
from audioret.cache.shards import payload_digests
from audioret.pipeline.features import DEFAULT_CONFIG


def build(root: Path, n: int, shard_size: int, rng: np.random.Generator) -> tuple[Path, Path]:
    ids = [f"clip_{i:06d}.wav" for i in range(n)]
    lengths = rng.integers(1000, 3001, size=n)
    feats = {c: rng.normal(-40, 20, size=(int(t), 64)).astype(np.float16) for c, t in zip(ids, lengths, strict=False)}
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


def build_gb(root: Path, gb: float, shard_size: int, rng: np.random.Generator) -> Path:
    """A cache of ~`gb` GiB of float16 features in 15–30-s clips (Clotho's lengths)."""
    feats: dict[str, np.ndarray] = {}
    total = 0
    while total < gb * 2**30:
        frames = int(rng.integers(1500, 3001))
        feats[f"clip_{len(feats):06d}.wav"] = rng.standard_normal((frames, 64), dtype=np.float32).astype(np.float16)
        total += frames * 64 * 2
    m = build_audio_cache(root, feats, DEFAULT_CONFIG.to_dict(), name="bench", dataset="bench", shard_size=shard_size)
    return cache_dir_for(root, "audio", m.key)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def verify_cost(gb: float, shard_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = build_gb(Path(tmp), gb, shard_size, np.random.default_rng(0))
        AudioCache(d, verify=False).load_all()  # warm the page cache

        def first_read(verify: bool) -> float:
            forget_verified()
            return timed(lambda: AudioCache(d, verify=verify).load_all())

        plain = min(first_read(False) for _ in range(3))
        checked = min(first_read(True) for _ in range(3))
        shards = sorted(d.glob("shard-*.h5"))

        def sha256_all() -> None:
            for p in shards:
                with h5py.File(p, "r") as f:
                    payload_digests(f, ("sha256",))

        sha = min(timed(sha256_all) for _ in range(3))
        nbytes = sum(p.stat().st_size for p in shards)
    print(f"cache: {nbytes / 2**30:.2f} GiB float16 in {len(shards)} shards of {shard_size} clips, warm page cache")
    print(f"open + read all, no check      : {plain:7.3f} s")
    print(f"open + read all, xxh3 check    : {checked:7.3f} s   ({checked / plain:.2f}x the plain read)")
    print(f"sha256 of every payload (old caches' fallback check): {sha:7.3f} s   ({(plain + sha) / plain:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify", action="store_true", help="measure the first-read payload check instead")
    ap.add_argument("--verify-gb", type=float, default=1.0, help="--verify: cache size in GiB")
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--crop-frames", type=int, default=1000,
                    help="frames read per clip at a random start (1000 = the trainer's 10 s crop); 0 = whole clip")
    args = ap.parse_args()
    if args.verify:
        verify_cost(args.verify_gb, args.shard_size)
        return
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

"""Benchmark: the DCASE 2025 baseline's data path (decode + resample + PaSST mel per clip, as it does on every
training step) against reading the cached PaSST mels (`prep audio --features passt`), same clips, same run.

Clips are Clotho-length (44.1 kHz 16-bit WAV, 15–30 s) built from the bundled real recordings. The baseline side
is the fast version of it, on one core: soundfile decode + soxr_hq resample to 32 kHz (pipeline/audio_io.py), then
hear21passt's `AugmentMelSTFT` in eval mode transcribed op by op in torch (tests/pipeline/test_passt_features.py).
The cached side reads each clip's mel from the shards in random order into a float32 array, as the trainer's streaming
mode does. Building the cache is a one-off and is timed separately. Target (issue 12): ≥ 100× on CPU.

    python benchmarks/passt_data_path.py --clips 200
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def baseline_clips_per_s(files: list[Path], repeats: int) -> tuple[float, np.ndarray]:
    """Decode + resample + torch PaSST mel per clip on one core; returns (clips/s, the last clip's mel)."""
    import torch
    from test_passt_features import hear21passt_eval_mel

    from audioret.pipeline.audio_io import load_mono

    torch.set_num_threads(1)
    mel = hear21passt_eval_mel(load_mono(files[0]))  # warm-up: imports, filterbank, FFT plans
    t0 = time.perf_counter()
    for _ in range(repeats):
        for p in files:
            mel = hear21passt_eval_mel(load_mono(p))
    return repeats * len(files) / (time.perf_counter() - t0), mel


def cached_clips_per_s(cache_dir: Path, repeats: int, seed: int = 0) -> tuple[float, np.ndarray]:
    """Read every clip's cached mel (float16 → float32 copy) in random order; returns (clips/s, the last one read)."""
    from audioret.cache.audio_shards import AudioCache

    cache = AudioCache(cache_dir)
    order = np.random.default_rng(seed).permutation(np.tile(np.arange(len(cache)), repeats))
    mel = np.asarray(cache.get(0), dtype=np.float32)  # warm-up: opens the memmaps
    t0 = time.perf_counter()
    for i in order:
        mel = np.asarray(cache.get(int(i)), dtype=np.float32)
    return len(order) / (time.perf_counter() - t0), mel


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--min-seconds", type=float, default=15.0)
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ap.add_argument("--baseline-repeats", type=int, default=1, help="passes over the clips on the baseline side")
    ap.add_argument("--cached-repeats", type=int, default=20, help="passes over the clips on the cached side")
    ap.add_argument("--workers", type=int, default=2, help="workers for building the cache (not part of the ratio)")
    args = ap.parse_args(argv)

    from prep_audio import build_clips  # benchmarks/prep_audio.py: the same Clotho-like clip builder

    from audioret.pipeline.prep_audio import prep_audio

    with tempfile.TemporaryDirectory(prefix="bench-passt-") as tmp:
        work = Path(tmp)
        manifest, seconds = build_clips(work / "clips", args.clips, args.min_seconds, args.max_seconds)
        files = sorted((work / "clips").glob("*.wav"))
        print(f"{len(files)} clips, {seconds / 60:.1f} min of 44.1 kHz audio ({seconds / len(files):.1f} s mean)")
        t0 = time.perf_counter()
        result = prep_audio("manifest", work / "clips", work / "cache", manifest=manifest, workers=args.workers,
                            progress=False, features="passt")
        t_prep = time.perf_counter() - t0
        base, base_last = baseline_clips_per_s(files, args.baseline_repeats)
        cached, _ = cached_clips_per_s(result.cache_dir, args.cached_repeats)
        from audioret.cache.audio_shards import AudioCache

        same = np.asarray(AudioCache(result.cache_dir).get(files[-1].name), dtype=np.float32)
        diff = float(np.abs(same - base_last).max())

    print(f"one-off: prep audio --features passt --workers {args.workers}: {t_prep:.1f} s")
    print(f"baseline data path (decode + soxr resample + torch PaSST mel, 1 core): {base:9.1f} clips/s")
    print(f"cached PaSST mels (shard read → float32, random order, 1 core):      {cached:9.1f} clips/s")
    print(f"speed-up: {cached / base:.0f}x (target >= 100x on CPU); max |cached - baseline| on one clip {diff:.4f}")


if __name__ == "__main__":
    sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "pipeline"), str(REPO / "benchmarks")]
    main()

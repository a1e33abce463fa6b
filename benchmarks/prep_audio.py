"""Benchmark: `audioret prep audio --workers N` against the naive per-clip loop, same clips, same run.

The naive way is what most retrieval repos do: `librosa.load(sr=32000)` + `melspectrogram` + `np.save` per clip,
one clip after another. The pipeline decodes in a process pool (one BLAS thread per worker) and writes shards.
Clips are Clotho-like (44.1 kHz 16-bit WAV, 10–30 s) built from the bundled real recordings, so codecs, rates and
spectra are real. Target (issue 2): ≥ 1.8× the loop on 2 cores. The wall time of the CLI includes interpreter
start-up and worker spawn, as a user would see it.

    python benchmarks/prep_audio.py --clips 200 --workers 2
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RATE = 44100


def build_clips(folder: Path, n: int, min_s: float, max_s: float, seed: int = 0) -> tuple[Path, float]:
    """`n` WAV clips of random length from the bundled recordings; returns (manifest path, total seconds)."""
    import soundfile as sf
    import soxr

    sources = []
    for p in sorted((REPO / "tests" / "data" / "audio").rglob("*")):
        if p.suffix.lower() in {".mp3", ".flac", ".wav"}:
            data, rate = sf.read(str(p), dtype="float32", always_2d=True)
            sources.append(soxr.resample(data.mean(axis=1), rate, RATE, "HQ"))
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0.0
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["split", "file_name", "caption_1"])
        for i in range(n):
            length = int(rng.uniform(min_s, max_s) * RATE)
            parts, have = [], 0
            while have < length:
                z = sources[int(rng.integers(len(sources)))] * np.float32(10 ** (rng.uniform(-12, 0) / 20))
                parts.append(z)
                have += len(z)
            clip = np.clip(np.concatenate(parts)[:length], -1, 1)
            sf.write(str(folder / f"clip_{i:04d}.wav"), clip, RATE, subtype="PCM_16")
            w.writerow(["development", f"clip_{i:04d}.wav", f"clip {i}"])
            total += length / RATE
    return manifest, total


def naive_loop(files: list[Path], out: Path) -> float:
    """The sequential baseline; returns seconds."""
    import librosa

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for p in files:
        y, _ = librosa.load(str(p), sr=32000)
        # pad_mode="reflect": DESIGN's padding (librosa >= 0.10 defaults to zeros), so both sides do the same work
        mel = librosa.feature.melspectrogram(y=y, sr=32000, n_fft=1024, hop_length=320, n_mels=64,
                                             fmin=50, fmax=14000, pad_mode="reflect")
        np.save(out / f"{p.stem}.npy", (10 * np.log10(np.maximum(mel, 1e-10))).T.astype(np.float16))
    return time.perf_counter() - t0


def pipeline_run(manifest: Path, cache: Path, workers: int, shard_size: int) -> tuple[float, Path]:
    """`audioret prep audio` in a subprocess, as a user runs it; returns (seconds, cache dir)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "audioret", "prep", "audio", "--dataset", "manifest", "--manifest", str(manifest),
           "--cache", str(cache), "--workers", str(workers), "--shard-size", str(shard_size), "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"prep audio failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, Path(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--min-seconds", type=float, default=10.0)
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=16,
                    help="a task is one shard: keep shards >= 4x workers (Clotho's 5929 clips give 24 of 256)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep clips here (default: a temp dir)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-prep-") as tmp:
        work = args.workdir or Path(tmp)
        manifest, seconds = build_clips(work / "clips", args.clips, args.min_seconds, args.max_seconds)
        files = sorted((work / "clips").glob("*.wav"))
        print(f"{len(files)} clips, {seconds / 60:.1f} min of 44.1 kHz audio; {os.cpu_count()} cores visible")
        t_pipe, cache_dir = pipeline_run(manifest, work / f"cache-{time.time_ns()}", args.workers,
                                         args.shard_size)
        t_naive = naive_loop(files, work / "npy")
        # Fixed cost of one CLI run (interpreter, imports, spawning workers, librosa warm-up): a 2-clip run.
        tiny = work / "tiny.csv"
        rows = "".join(f"development,clips/{p.name},x\n" for p in files[:2])
        tiny.write_text("split,file_name,caption_1\n" + rows)
        t_fixed, _ = pipeline_run(tiny, work / f"cache-tiny-{time.time_ns()}", args.workers, 1)

        from audioret.cache.audio_shards import AudioCache  # same numbers? one clip as a sanity check

        ref = np.load(work / "npy" / f"{files[0].stem}.npy").astype(np.float32)
        ours = np.asarray(AudioCache(cache_dir).get(files[0].name), dtype=np.float32)
        diff = float(np.abs(ref - ours)[ref > -60].max())  # below that, float32 FFT round-off dominates

    print(f"naive loop (librosa.load + melspectrogram + np.save): {t_naive:7.2f} s  "
          f"{len(files) / t_naive:6.1f} clips/s  {seconds / t_naive:7.1f} audio-s/s")
    print(f"audioret prep audio --workers {args.workers} --shard-size {args.shard_size}: {t_pipe:7.2f} s  "
          f"{len(files) / t_pipe:6.1f} clips/s  {seconds / t_pipe:7.1f} audio-s/s")
    steady = t_naive / max(t_pipe - t_fixed, 1e-9)
    print(f"fixed start-up cost of one prep run: {t_fixed:.2f} s; speed-up without it: {steady:.2f}x")
    print(f"speed-up: {t_naive / t_pipe:.2f}x (target >= 1.8x on 2 cores); "
          f"max |diff| > -60 dB on one clip {diff:.3f} dB")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()

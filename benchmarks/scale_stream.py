"""The streamed training loader at the scale of the full recipe (Clotho + AudioCaps + WavCaps), against decoding.

Why: with ~450k clips the features no longer fit in RAM on a training node, so every epoch streams 10-s crops
from the memmapped shards through DataLoader workers. This builds a synthetic cache shaped like that recipe with
the project's own writers (`build_audio_cache`, `build_caption_cache`; generated log-mel-shaped float16, no audio
decoding) and measures, through the trainer's real loader (`trainer.data.TrainData`, mode "stream"):

  - epoch-plan build time (target < 2 s) and first-batch latency,
  - batches/s of batch-64 10-s crops with 2 workers (target >= 40/s: a 25-ms GPU step never waits),
  - each worker's memory growth over the epoch (target < 50 MB): private pages, i.e. copy-on-write copies of
    the parent's objects and the worker's own allocations, next to RSS, which also counts mapped shard pages
    (page cache, shared and reclaimable),
  - the baseline's data path on the same cores: decode + resample every clip (`pipeline.audio_io.load_mono`:
    soundfile + soxr_hq to 32 kHz) on real recordings, as clips/s and the batches/s that gives with 2 workers.

Recipe per --clips N: Clotho dev share 3,839/450k (5 captions, 15-30 s), AudioCaps train share 46k/450k
(1 caption, 10 s), the rest WavCaps (1 caption, 1-30 s). Features are stored up to --store-seconds (default 10 s,
the crop): a 10-s crop reads the same bytes from a 10-s as from a 30-s clip, and the cap keeps the full-size
cache at about 50 GB instead of about 86 GB (--store-seconds 30 stores whole clips). The cache goes to --out
and is reused by the next run with the same shape.

    python benchmarks/scale_stream.py --clips 2000 --out /tmp/scale-smoke          # smoke run, ~0.2 GB
    python benchmarks/scale_stream.py --clips 450000 --out /data/scale-cache        # the full recipe

Opening the caches at scale (`--before REF`): each step `train` runs before its first batch — resolve and open
the audio cache (one small HDF5 read per shard), open the caption cache (read and checksum every caption
shard), join captions to audio (trainer/data.py caption_table) and check every audio shard's payload in the
parent (AudioCache.verify) — timed in fresh processes, for this checkout and for the code at git revision REF
(extracted with `git archive`), alternately, best of --open-repeats; `--open-only` skips the epoch:

    python benchmarks/scale_stream.py --clips 450000 --store-seconds 0.2 --out /tmp/scale --open-only --before main
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The code under test: this checkout, or (for `--before REF`, in a child process) an extracted older revision.
sys.path.insert(0, os.environ.get("AUDIORET_BENCH_CODE") or str(REPO))
from audioret.cache.audio_shards import build_audio_cache  # noqa: E402
from audioret.cache.caption_shards import build_caption_cache  # noqa: E402
from audioret.cache.manifest import iter_caches  # noqa: E402

NAME = "scale"
FPS = 100
# (source, share of the clips at 450k, captions per clip, duration range in seconds)
RECIPE = (("clotho", 3839 / 450_000, 5, (15.0, 30.0)), ("audiocaps", 46_000 / 450_000, 1, (10.0, 10.0)),
          ("wavcaps", None, 1, (1.0, 30.0)))
WORDS = ("a dog barks while rain falls on a tin roof and cars pass by in the distance as birds sing loudly "
         "someone walks on gravel then a door creaks open").split()


def recipe(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(clip ids, durations in s, captions per clip) of the synthetic recipe with `n` clips."""
    rng = np.random.default_rng(seed)
    ids, durs, caps = [], [], []
    left = n
    for source, share, n_caps, (lo, hi) in RECIPE:
        count = left if share is None else min(left, max(1, round(n * share)))
        left -= count
        ids += [f"{source}/{i:07d}.flac" for i in range(count)]
        durs.append(rng.uniform(lo, hi, size=count))
        caps.append(np.full(count, n_caps))
    return ids, np.concatenate(durs), np.concatenate(caps)


class GeneratedFeatures(Mapping):
    """clip id → float16 (frames, 64) log-mel-shaped array, made on access from one random pool (so a 450k-clip
    cache is written shard by shard without holding it in memory, and without costing a normal draw per value)."""

    def __init__(self, ids: list[str], frames: np.ndarray, seed: int = 0) -> None:
        self.frames = dict(zip(ids, frames.tolist(), strict=False))
        self.pool = np.random.default_rng(seed).normal(-40, 20, size=(4096 + 3000, 64)).astype(np.float16)

    def __getitem__(self, clip_id: str) -> np.ndarray:
        start = zlib.crc32(clip_id.encode()) % 4096
        return self.pool[start:start + self.frames[clip_id]]

    def __iter__(self):
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


def existing(root: Path, kind: str, shape: dict):
    for directory, m in iter_caches(root, kind):
        if m is not None and m.complete and m.name == NAME and m.extra.get("bench_shape") == shape:
            return directory
    return None


def build_caches(root: Path, n: int, store_seconds: float, shard_size: int) -> tuple[dict, float, Path]:
    """Write (or find) the audio and caption caches; returns the recipe stats, the seconds spent writing and
    the audio cache directory."""
    from audioret.pipeline.features import DEFAULT_CONFIG

    ids, durs, n_caps = recipe(n)
    frames = np.maximum(1, np.round(np.minimum(durs, store_seconds) * FPS)).astype(np.int64)
    shape = {"clips": n, "store_seconds": store_seconds, "shard_size": shard_size}
    stats = {"clips": n, "captions": int(n_caps.sum()), "mean_duration_s": float(durs.mean()),
             "gb": float(frames.sum()) * 64 * 2 / 1e9}
    t0 = time.perf_counter()
    if existing(root, "audio", shape) is None:
        print(f"writing {stats['gb']:.1f} GB of float16 features for {n} clips to {root} ...", flush=True)
        m = build_audio_cache(root, GeneratedFeatures(ids, frames), DEFAULT_CONFIG.to_dict(), name=NAME,
                              dataset="synthetic-recipe", durations=dict(zip(ids, durs.tolist(), strict=False)),
                              shard_size=shard_size)
        m.extra["bench_shape"] = shape
        m.write(root / "audio" / m.dir_name)
    if existing(root, "captions", shape) is None:
        caps = {c: [" ".join(WORDS[(i * 7 + j * 3 + k) % len(WORDS)] for k in range(6 + (i + j) % 9))
                    for j in range(k_caps)] for i, (c, k_caps) in enumerate(zip(ids, n_caps.tolist(), strict=False))}
        m = build_caption_cache(root, caps, name=NAME, dataset="synthetic-recipe")
        m.extra["bench_shape"] = shape
        m.write(root / "captions" / m.dir_name)
    return stats, time.perf_counter() - t0, existing(root, "audio", shape)


def warm_page_cache(directory: Path) -> str:
    """Read every shard once when the cache fits in available RAM (the 'from page cache' condition)."""
    files = sorted(directory.glob("*.h5"))
    size = sum(f.stat().st_size for f in files)
    avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if size > 0.8 * avail:
        return f"cache {size / 1e9:.1f} GB > 80 % of free RAM ({avail / 1e9:.1f} GB): reads come partly from disk"
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    return f"cache {size / 1e9:.1f} GB read once into the page cache"


def memory_of(pid: int) -> dict[str, float]:
    """MB of a process's resident memory: Rss (VmRSS), Private (pages no other process shares: what a forked
    worker really costs, copy-on-write copies included) and Rss_File (mapped shard pages, i.e. page cache)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Rss", "Private_Clean", "Private_Dirty", "Anonymous"):
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        return out
    out["Private"] = out.pop("Private_Clean", 0) + out.pop("Private_Dirty", 0)
    out["Rss_File"] = out.get("Rss", 0) - out.pop("Anonymous", 0)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def worker_pids() -> list[int]:
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def stream_epoch(cache: Path, args) -> dict:
    """Open the caches as `train` does, then time one streamed epoch through TrainData."""
    import torch

    from audioret.trainer.config import load_config
    from audioret.trainer.data import TrainData
    from audioret.trainer.sources import open_caches

    t0 = time.perf_counter()
    audio, captions = open_caches(cache, NAME, None, None)
    cfg = load_config(None, ["resident=stream", f"num_workers={args.workers}", f"batch_size={args.batch}",
                             f"max_seconds={args.crop}", "p_bt=0", "p_eda=0", "seed=0"])
    data = TrainData(audio, captions, "development", cfg, torch.device("cpu"))
    setup = time.perf_counter() - t0
    plan_times = []
    for _ in range(3):
        t = time.perf_counter()
        plan = data.plan(1)
        plan_times.append(time.perf_counter() - t)
    total = min(len(plan.batches), args.max_batches or len(plan.batches))
    t = time.perf_counter()
    batches = data.epoch(1)
    next(batches)
    first = time.perf_counter() - t
    pids = worker_pids()
    settle = min(10, total // 4)  # RSS baseline once the workers have filled their prefetch queues
    start_mem = end_mem = {p: memory_of(p) for p in pids}
    cpu0 = sum(os.times()[:2]) + sum(cpu_seconds(p) for p in pids)
    cpu1, t_first, n, n_cpu = cpu0, time.perf_counter(), 1, 1
    for n, _ in enumerate(batches, start=2):
        if n == settle:
            start_mem = end_mem = {p: memory_of(p) for p in pids}
        if n % 100 == 0 or n >= total - 1:
            end_mem = {p: memory_of(p) or end_mem[p] for p in pids}
            cpu1 = sum(os.times()[:2]) + sum(cpu_seconds(p) for p in pids)
            n_cpu = n
        if n >= total:
            break
    rate = (n - 1) / (time.perf_counter() - t_first)
    cpu_per_batch = (cpu1 - cpu0) / max(1, n_cpu - 1) if n > 1 else float("nan")
    growth = {k: max(end_mem[p].get(k, 0) - start_mem[p].get(k, 0) for p in pids) if pids else float("nan")
              for k in ("Private", "Rss", "Rss_File")}
    return {"setup_s": setup, "plan_s": plan_times[0], "plan_s_best": min(plan_times), "first_batch_s": first,
            "batches": n, "epoch_batches": len(plan.batches), "batches_per_s": rate, "workers": len(pids),
            "cpu_ms_per_batch": 1000 * cpu_per_batch,
            "rss_growth_mb": growth, "captions": len(data.table)}


def open_steps(root: Path) -> dict:
    """Seconds of each step of opening the caches as `train` does (trainer/sources.py open_caches, then TrainData's
    caption join and parent-side payload check), in this process; only calls that exist in older revisions too."""
    from audioret.cache.caption_shards import CaptionCache
    from audioret.trainer.data import caption_table
    from audioret.trainer.sources import open_audio_cache

    t0 = time.perf_counter()
    audio = open_audio_cache(root, NAME)
    t1 = time.perf_counter()
    captions = CaptionCache.open(root, name=NAME)
    t2 = time.perf_counter()
    table = caption_table(audio, captions, "development")
    t3 = time.perf_counter()
    audio.verify()
    t4 = time.perf_counter()
    return {"open_audio_s": t1 - t0, "open_captions_s": t2 - t1, "join_s": t3 - t2, "verify_audio_s": t4 - t3,
            "total_s": t4 - t0, "captions": len(table), "fds": len(os.listdir("/proc/self/fd"))}


def open_in_child(root: Path, code: Path | None) -> dict:
    """`open_steps` in a fresh interpreter (nothing verified or imported yet) running `code` (None: this one)."""
    env = dict(os.environ, AUDIORET_BENCH_CODE=str(code) if code else "", PYTHONPATH=str(code or REPO))
    out = subprocess.run([sys.executable, __file__, "--open-steps", "--out", str(root)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare_open(root: Path, ref: str, repeats: int) -> dict:
    """Best of `repeats` fresh-process opens for revision `ref` (before) and this checkout (after), alternated
    so both see the same machine load."""
    with tempfile.TemporaryDirectory(prefix="audioret-before-") as tmp:
        tar = subprocess.run(["git", "-C", str(REPO), "archive", ref, "cache", "trainer", "pipeline"],
                             check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for _ in range(repeats):
            runs["before"].append(open_in_child(root, Path(tmp)))
            runs["after"].append(open_in_child(root, None))
    return {k: {m: min(r[m] for r in v) for m in v[0]} for k, v in runs.items()}


def open_rows(cmp: dict, ref: str) -> list[tuple[str, str, str]]:
    b, a = cmp["before"], cmp["after"]
    steps = [("open audio cache (one HDF5 read per shard)", "open_audio_s"),
             ("open caption cache (read + checksum shards)", "open_captions_s"),
             ("caption join (caption_table)", "join_s"), ("audio payload check in the parent", "verify_audio_s"),
             ("open + caption join + check, total", "total_s")]
    return [(label, f"{b[k]:.2f} s → {a[k]:.2f} s", f"speed-up {b[k] / a[k]:.1f}× ({ref} → this checkout)")
            for label, k in steps]


def decode_baseline(clip_seconds: float, out: Path, seconds: float = 3.0) -> dict:
    """Decode + resample to 32 kHz (the project's own `load_mono`: soundfile + soxr_hq) on one core, of a 44.1-kHz
    FLAC of the recipe's mean duration made from the bundled real recordings (WavCaps ships FLAC)."""
    import soundfile as sf

    from audioret.pipeline.audio_io import load_mono

    parts = [sf.read(f, dtype="float32", always_2d=True)[0].mean(axis=1)
             for f in sorted((REPO / "tests" / "data" / "audio").rglob("*.flac")) if sf.info(f).samplerate == 44100]
    y = np.tile(np.concatenate(parts), int(clip_seconds * 44100 // sum(map(len, parts))) + 1)
    path = out / "baseline-clip.flac"
    sf.write(path, y[: int(clip_seconds * 44100)], 44100, subtype="PCM_16")
    load_mono(path)  # warm: imports, file cache
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        load_mono(path)
        n += 1
    return {"clips_per_s": n / (time.perf_counter() - t0), "clip_seconds": clip_seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=450_000, help="clips in the synthetic recipe (default: full size)")
    ap.add_argument("--out", type=Path, required=True, help="cache root (reused when the shape matches)")
    ap.add_argument("--store-seconds", type=float, default=10.0, help="features stored per clip, at most")
    ap.add_argument("--shard-size", type=int, default=256, help="clips per audio shard (prep audio's default)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--crop", type=float, default=10.0, help="training crop in seconds")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-batches", type=int, default=0, help="stop the epoch early (0: the whole epoch)")
    ap.add_argument("--before", metavar="REF", help="also time opening the caches with git revision REF")
    ap.add_argument("--open-repeats", type=int, default=2, help="fresh-process opens per revision (best kept)")
    ap.add_argument("--open-only", action="store_true", help="build/find the caches, time opening them, stop")
    ap.add_argument("--open-steps", action="store_true", help=argparse.SUPPRESS)  # the child of open_in_child
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.open_steps:
        print(json.dumps(open_steps(args.out)))
        return

    stats, build_s, audio_dir = build_caches(args.out, args.clips, args.store_seconds, args.shard_size)
    page = warm_page_cache(audio_dir)
    if args.open_only:
        cmp = compare_open(args.out, args.before, args.open_repeats) if args.before else {
            "after": open_in_child(args.out, None)}
        print(f"recipe: {stats['clips']} clips, {stats['captions']} captions, {stats['gb']:.2f} GB features; {page}")
        rows = open_rows(cmp, args.before) if args.before else [
            (k, f"{v:.2f} s", "") for k, v in cmp["after"].items() if k.endswith("_s")]
        for label, value, note in rows:
            print(f"{label:<48} {value:>26}  {note}")
        print(json.dumps({"recipe": stats, "open": cmp}))
        return
    s = stream_epoch(args.out, args)
    b = decode_baseline(stats["mean_duration_s"], args.out)
    base_bps = args.workers * b["clips_per_s"] / args.batch
    g = s["rss_growth_mb"]
    print(f"recipe: {stats['clips']} clips, {stats['captions']} captions, mean {stats['mean_duration_s']:.1f} s, "
          f"{stats['gb']:.2f} GB features ({'written in %.0f s' % build_s if build_s > 1 else 'reused'}); {page}")
    print(f"cores {os.cpu_count()} · batch {args.batch} · crop {args.crop:g} s · {s['workers']} workers · "
          f"{s['batches']} of {s['epoch_batches']} batches")
    rows = [
        ("open caches + caption join", f"{s['setup_s']:.2f} s", ""),
        ("epoch plan (first / best of 3)", f"{s['plan_s']:.3f} / {s['plan_s_best']:.3f} s",
         "< 2 s " + ("met" if s["plan_s"] < 2 else "NOT met")),
        ("first batch (plan + fork + read)", f"{s['first_batch_s']:.2f} s", ""),
        ("streamed batches/s", f"{s['batches_per_s']:.1f}",
         ">= 40 " + ("met" if s["batches_per_s"] >= 40 else "NOT met")),
        ("CPU per batch, main + workers (load-independent)", f"{s['cpu_ms_per_batch']:.1f} ms",
         f"at most {os.cpu_count() / s['cpu_ms_per_batch'] * 1000:.0f} batches/s on {os.cpu_count()} idle cores"),
        ("worker memory growth, private (incl. copy-on-write)", f"{g['Private']:.1f} MB",
         "< 50 MB " + ("met" if g["Private"] < 50 else "NOT met")),
        ("worker RSS growth (incl. mapped shard pages)", f"{g['Rss']:.1f} MB",
         f"of which file: {g['Rss_File']:.1f} MB"),
        ("baseline: decode + resample, 1 core", f"{b['clips_per_s']:.1f} clips/s", "44.1-kHz FLAC of real sounds"),
        (f"baseline at {args.workers} workers, {stats['mean_duration_s']:.1f}-s clips", f"{base_bps:.2f} batches/s",
         f"streamed is {s['batches_per_s'] / base_bps:.0f}×"),
    ]
    for label, value, note in rows:
        print(f"{label:<48} {value:>26}  {note}")
    cmp = compare_open(args.out, args.before, args.open_repeats) if args.before else None
    for label, value, note in open_rows(cmp, args.before) if cmp else []:
        print(f"{label:<48} {value:>26}  {note}")
    print(json.dumps({"recipe": stats, "stream": s, "baseline": {**b, "batches_per_s": base_bps}, "open": cmp}))


if __name__ == "__main__":
    main()

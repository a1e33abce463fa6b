"""The parts of benchmarks/gpu_check.sh that are not benchmarks of their own: offline fixtures, back-translation
with MarianMT, and a short training run scored on the accelerator and on the CPU.

Why offline fixtures: the GPU machine reaches no hub and may lack the audio decoders, so everything is built here
from configs and random numbers: a feature cache written by the project's own shard writer
(`cache.audio_shards.build_audio_cache`), a tiny random text model and a tiny MarianMT
(tests/support/translate_servers.py).

    python benchmarks/gpu_check_parts.py fixtures --out /tmp/gc [--seconds 2]
    python benchmarks/gpu_check_parts.py marian --model /tmp/gc/marian --device cuda
    python benchmarks/gpu_check_parts.py eval --fixtures /tmp/gc --device cuda --work /tmp/gc/run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

SPLITS = {"development": 48, "validation": 16, "evaluation": 16}
NAME = "gpucheck"


def synthetic_caches(root: Path, seconds: float, seed: int = 0) -> Path:
    """Audio (64-bin PANNs log-mel shaped, random) and caption caches named NAME under `root`. Each clip's
    features carry a clip-specific mel profile and its captions name it, so a short run has something to learn."""
    from audioret.cache.audio_shards import build_audio_cache
    from audioret.cache.caption_shards import build_caption_cache
    from benchmarks.encoder_steps import CAPTIONS

    rng = np.random.default_rng(seed)
    frames = int(round(seconds * 100))
    features, captions, splits = {}, {}, {}
    for split, n in SPLITS.items():
        for i in range(n):
            clip = f"{split[:3]}_{i:04d}.wav"
            kind = int(rng.integers(len(CAPTIONS)))
            profile = -60 + 25 * np.sin(np.arange(64) * (kind + 1) / 9.0)
            length = int(frames * rng.uniform(0.6, 1.0))
            features[clip] = (profile + rng.normal(0, 6, (length, 64))).astype(np.float16)
            captions[clip] = [f"{CAPTIONS[kind]} take {j}" for j in range(5)]
            splits[clip] = split
    config = {"feature": "panns-logmel", "n_mels": 64, "sample_rate": 32000, "hop_length": 320}
    build_audio_cache(root, features, config, NAME, splits=splits,
                      durations={c: f.shape[0] / 100 for c, f in features.items()})
    build_caption_cache(root, captions, NAME, splits=splits)
    return root


def fixtures(args) -> None:
    from benchmarks.random_models import random_text_model
    from support.translate_servers import build_tiny_marian

    out = Path(args.out)
    t0 = time.perf_counter()
    synthetic_caches(out / "cache", args.seconds)
    random_text_model(out / "text-tiny", "bert", "tiny")
    build_tiny_marian(out / "marian")
    print(f"fixtures in {out}: cache {NAME} ({sum(SPLITS.values())} clips of ≤ {args.seconds:g} s), tiny text model, "
          f"tiny MarianMT — {time.perf_counter() - t0:.1f} s")


def marian(args) -> int:
    """Back-translate test sentences through the tiny MarianMT on `device` and on the CPU; the outputs must agree
    (greedy decoding of the same weights) — a CUDA translation path that silently differs is a failure."""
    from audioret.pipeline.translate.marian import MarianBackend
    from support.translate_servers import SENTENCES

    texts = list(SENTENCES) * max(1, args.repeat)
    out = {}
    for device in dict.fromkeys([args.device, "cpu"]):
        backend = MarianBackend(template=str(args.model), device=device, batch_size=64, max_new_tokens=16)
        backend.translate_batch(texts[:2], "en", "de")  # load + warm up
        t0 = time.perf_counter()
        out[device] = backend.translate_batch(texts, "en", "de")
        print(f"marian on {device}: {len(texts)} sentences in {time.perf_counter() - t0:.3f} s")
    got = out[args.device]
    if not all(isinstance(t, str) and t for t in got):
        print(f"FAILED: empty or failed translations on {args.device}")
        return 1
    same = sum(a == b for a, b in zip(got, out["cpu"], strict=False))
    print(f"marian {args.device} vs cpu: {same}/{len(texts)} translations identical")
    return 0 if same >= len(texts) - 1 else 1  # one near-tie in greedy decoding may flip under other kernels


def cli(*argv: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "audioret", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"audioret {' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def evaluate(args) -> int:
    """`audioret train` on the device (resident features there when it is CUDA), then `audioret eval` of the same
    checkpoint on the device and on the CPU: metrics side by side, and the largest difference between the clip and
    caption embeddings of the two (the pass criterion: the model is trained for a few steps only, so its ranking
    has near-ties that bf16 may flip)."""
    from audioret.trainer.evaluate import LoadedRun

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    fx, work = Path(args.fixtures), Path(args.work)
    resident = "gpu" if args.device.startswith("cuda") else "ram"
    sets = [f"text_model={fx / 'text-tiny'}", f"device={args.device}", f"resident={resident}", "epochs=2",
            "batch_size=16", "audio_width=0.25", "embed_dim=64", "lr=1e-3", "p_eda=0", "p_bt=0", "max_seconds=5",
            "num_workers=0", "schedule=cosine", "optimizer=adamw", "warmup_epochs=0.5", "min_lr=1e-5"]
    t0 = time.perf_counter()
    cli("train", "--cache", fx / "cache", "--name", NAME, "--out", work, "--no-progress",
        *[a for kv in sets for a in ("--set", kv)], env=env)
    print(f"train on {args.device} (resident={resident}, 2 epochs): {time.perf_counter() - t0:.1f} s")
    print((work / "metrics.csv").read_text().strip())
    results = {}
    for device in dict.fromkeys([args.device, "cpu"]):
        t0 = time.perf_counter()
        cli("eval", work, "--device", device, "--out", work / f"eval-{device}", env=env)
        results[device] = json.loads((work / f"eval-{device}" / "eval-evaluation.json").read_text())
        print(f"eval on {device}: {time.perf_counter() - t0:.1f} s (process start and model load included)")
    keys = ["map10", "map16", "r1", "r5", "r10", "a2t_map10"]
    for k in keys:
        print(f"  {k:<10}" + "".join(f" {d}={results[d][k]:.4f}" for d in results))
    emb = {}
    for device in results:
        run = LoadedRun(work, "best", device)  # embedded afresh: clip_embeddings() would reuse the other's file
        audio, captions = run.open_caches()
        clips = [audio.get(int(i)) for i in audio.indices_for_split("evaluation")]
        texts = [t for _, _, t in captions.all_captions("evaluation")]
        emb[device] = (run.embed_features(clips), run.embed_texts(texts))
    diff = max(float((a - b).abs().max()) for d in emb for a, b in zip(emb[d], emb["cpu"], strict=False))
    metric_diff = max(abs(results[d][k] - results["cpu"][k]) for d in results for k in keys)
    print(f"max |embedding {args.device} − cpu| {diff:.2e} (clips and captions; bf16 autocast on CUDA, fp32 on "
          f"CPU) · max |metric {args.device} − cpu| {metric_diff:.4f} · map10 {results[args.device]['map10']:.3f}")
    return 0 if diff < 0.05 else 1  # metrics of a barely trained model may flip near-ties: shown, not judged


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="part", required=True)
    f = sub.add_parser("fixtures", help="synthetic cache, tiny text model, tiny MarianMT")
    f.add_argument("--out", required=True)
    f.add_argument("--seconds", type=float, default=10.0, help="longest clip")
    m = sub.add_parser("marian", help="back-translation on the device vs the CPU")
    m.add_argument("--model", required=True)
    m.add_argument("--device", default="cuda")
    m.add_argument("--repeat", type=int, default=8, help="copies of the test sentences")
    e = sub.add_parser("eval", help="train on the device, eval on the device and on the CPU")
    e.add_argument("--fixtures", required=True)
    e.add_argument("--device", default="cuda")
    e.add_argument("--work", required=True)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.part == "fixtures":
        fixtures(args)
        return 0
    return marian(args) if args.part == "marian" else evaluate(args)


if __name__ == "__main__":
    sys.exit(main())

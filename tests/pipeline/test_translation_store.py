"""The translation store on real SQLite files: batched look-ups agree with one SELECT per text, stores of the
older rowid layout keep working (and older code can use the new layout), and training never opens the store:
it reads back-translations from the caption shards."""
from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from audioret.cache.audio_shards import AudioCache
from audioret.cache.caption_shards import CaptionCache
from audioret.pipeline.text import normalise_caption
from audioret.pipeline.translate.store import LOOKUP_CHUNK, TranslationStore, store_path
from audioret.trainer.config import load_config
from audioret.trainer.data import TrainData
from support import run_cli
from support.demo import fast_overrides, minilm_path
from support.translate_servers import build_tiny_marian

# The statements of the store as it was before the WITHOUT ROWID layout, verbatim: "older code".
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS translations (
    backend TEXT NOT NULL, engine TEXT NOT NULL, pivot TEXT NOT NULL, direction TEXT NOT NULL,
    source TEXT NOT NULL, target TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (backend, engine, pivot, direction, source)
)
"""
OLD_INSERT = "INSERT OR REPLACE INTO translations VALUES (?,?,?,?,?,?,?)"
OLD_SELECT = ("SELECT source, target FROM translations WHERE backend=? AND engine=? AND pivot=? AND direction=? "
              "AND source IN ({})")
KEY = ("marian", "opus-mt-en-de", "de", "en->de")


def _texts(n: int) -> list[str]:
    odd = ["", " ", "it's a \"quoted\" dog", "café crème – naïve", "a\nnewline", "%_like_%", "x" * 3000]
    return odd + [f"caption {i} of a bird singing" for i in range(n - len(odd))]


def _old_select(db: sqlite3.Connection, sources: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in range(0, len(sources), 500):
        chunk = sources[i:i + 500]
        out.update(db.execute(OLD_SELECT.format(",".join("?" * len(chunk))), (*KEY, *chunk)).fetchall())
    return out


def test_batched_lookups_agree_with_one_select_per_text(tmp_path: Path) -> None:
    texts = _texts(3 * LOOKUP_CHUNK + 17)
    stored = texts[::2]
    with TranslationStore(tmp_path / "t.sqlite3") as store:
        for i in range(0, len(stored), 64):
            store.put_many(*KEY, [(s, f"<{s}>") for s in stored[i:i + 64]])
        store.put_many("marian", "opus-mt-en-fr", "fr", "en->fr", [(texts[1], "other direction")])
        got = store.get_many(*KEY, texts + texts[:50])  # duplicates asked twice are answered once
        assert store.count() == len(stored) + 1
    with contextlib.closing(sqlite3.connect(tmp_path / "t.sqlite3")) as db:
        one_by_one = {}
        for s in texts:
            row = db.execute("SELECT target FROM translations WHERE backend=? AND engine=? AND pivot=? "
                             "AND direction=? AND source=?", (*KEY, s)).fetchone()
            if row:
                one_by_one[s] = row[0]
    assert got == one_by_one == {s: f"<{s}>" for s in stored}


def test_older_rowid_store_is_used_as_it_is_and_older_code_reads_the_new_layout(tmp_path: Path) -> None:
    old_file = tmp_path / "old.sqlite3"
    with contextlib.closing(sqlite3.connect(old_file)) as db, db:
        db.execute(OLD_SCHEMA)
        db.executemany(OLD_INSERT, [(*KEY, f"old {i}", f"alt {i}", 1.0) for i in range(700)])
    with TranslationStore(old_file) as store:
        assert store.layout == "rowid"
        assert store.get_many(*KEY, ["old 3", "old 699", "new 1"]) == {"old 3": "alt 3", "old 699": "alt 699"}
        store.put_many(*KEY, [("new 1", "neu 1")])
    with TranslationStore(old_file) as store:  # not migrated behind the user's back
        assert store.layout == "rowid" and store.count() == 701
    new_file = tmp_path / "new.sqlite3"
    with TranslationStore(new_file) as store:
        assert store.layout == "without rowid"
        store.put_many(*KEY, [(f"new {i}", f"neu {i}") for i in range(700)])
    with contextlib.closing(sqlite3.connect(new_file)) as db:  # what the previous version of the store runs
        with db:
            db.execute(OLD_SCHEMA)  # CREATE TABLE IF NOT EXISTS: leaves the new table as it is
            db.execute(OLD_INSERT, (*KEY, "new 0", "replaced", 2.0))
            db.execute(OLD_INSERT, (*KEY, "old code", "wrote this", 2.0))
        got = _old_select(db, [f"new {i}" for i in range(700)] + ["old code"])
    assert got == {**{f"new {i}": f"neu {i}" for i in range(700)}, "new 0": "replaced", "old code": "wrote this"}
    with TranslationStore(new_file) as store:
        assert store.count() == 701 and store.get_many(*KEY, ["new 0"]) == {"new 0": "replaced"}


@pytest.fixture(scope="module")
def marian_demo(demo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache root with the session's demo audio cache (a copy) and captions prepared by `prep captions
    --translator marian` (a tiny model) through the real CLI."""
    shared = demo_cache
    base = tmp_path_factory.mktemp("bt-demo")
    cache = base / "cache"
    shutil.copytree(shared / "audio", cache / "audio")
    model = build_tiny_marian(base / "opus-mt-tiny", positions=16)
    run_cli("prep", "captions", "--dataset", "clotho", "--root", shared.parent / "data", "--cache", cache,
            "--name", "demo", "--translator", "marian", "--marian-model-template", model, "--pivots", "de",
            "--device", "cpu", "--no-progress", check=True)
    return cache


def test_training_reads_back_translations_from_the_shards_and_never_opens_the_store(marian_demo, tmp_path) -> None:
    cache = marian_demo
    assert store_path(cache).is_file()
    moved = tmp_path / "moved-translations"
    shutil.move(str(store_path(cache).parent), moved)
    store_path(cache).parent.write_text("not a folder: opening the store here fails\n")
    try:
        run = tmp_path / "run"
        proc = run_cli("train", "--cache", cache, "--name", "demo", "--out", run, "--no-progress",
                       *fast_overrides(1, ["p_bt=1", "p_eda=0", "batch_size=8"]))
        assert proc.returncode == 0, proc.stderr
        assert store_path(cache).parent.read_text().startswith("not a folder")
    finally:
        store_path(cache).parent.unlink()
        shutil.move(str(moved), store_path(cache).parent)
    # What p_bt=1 hands the text encoder: the shards' back-translations (the store's own rows, normalised).

    captions = CaptionCache.open(cache, name="demo")
    cfg = load_config(None, ["p_bt=1", "p_eda=0", "batch_size=8", f"text_model={minilm_path()}"])
    data = TrainData(AudioCache.open(cache, name="demo"), captions, "development", cfg, torch.device("cpu"))
    rows = np.arange(len(data.table))
    picked = data.text.texts(rows, seed=0)
    bt = [captions.back_translations(data.table.clip_ids[r])["de"][int(data.table.caption_index[r])] for r in rows]
    assert picked == bt and picked != data.table.texts
    forward, backward = captions.config["models"]["de"]
    raw = sorted({c.strip() for cid in captions.clip_ids for c in captions.raw(cid)})
    with TranslationStore.for_cache(cache) as store:  # the shards hold what prep took from the store
        mids = store.get_many("marian", forward, "de", "en->de", raw)
        backs = store.get_many("marian", backward, "de", "de->en", mids.values())
    for cid in captions.clip_ids:
        for text, caption, shard_bt in zip(captions.raw(cid), captions.captions(cid),
                                           captions.back_translations(cid)["de"], strict=False):
            assert shard_bt == (normalise_caption(backs[mids[text.strip()]]) or caption)

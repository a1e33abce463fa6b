"""The persistent translation store: SQLite in WAL mode under `CACHE_DIR/translations/`.

Why: back-translation is the slowest and the only rate-limited stage. Every translation is committed as it
arrives, keyed by (backend, engine, pivot, direction, source text), so an interrupted run resumes without asking
twice and a second dataset reuses shared captions; WAL lets a reader run beside a writer. New stores are WITHOUT
ROWID tables, older rowid stores work unchanged both ways. Used by `prep` only: training reads the caption shards.
Layout and numbers: docs/data.md, docs/benchmarks.md.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Iterable

STORE_DIR = "translations"
STORE_FILE = "translations.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS translations (
    backend TEXT NOT NULL, engine TEXT NOT NULL, pivot TEXT NOT NULL, direction TEXT NOT NULL,
    source TEXT NOT NULL, target TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (backend, engine, pivot, direction, source)
) WITHOUT ROWID
"""
#: Pages of WAL between automatic checkpoints (SQLite's default is 1000). Each checkpoint copies the WAL into
#: the database and fsyncs it; a batch of 64 length-sorted texts touches ~64 random leaf pages of the key
#: B-tree, so at the default a 2.4M-row build checkpointed every few batches. 10000 pages (~40 MB of WAL)
#: coalesces repeated writes of the same pages: a fifth to a third less wall time for a 2.4M-row build while
#: the machine was busy; when idle, this store as a whole inserted 5-10 % faster than the rowid layout with
#: default checkpoints (benchmarks/translation_store.py).
WAL_CHECKPOINT_PAGES = 10_000
CACHE_KIB = 65_536  # page cache per connection (default 2 MB): the upper levels of a 2.4M-row key B-tree stay hot
LOOKUP_CHUNK = 500  # texts per SELECT ... IN (...): well under SQLite's bound-parameter limit


def create_schema(db: sqlite3.Connection) -> None:
    """The table of a new store (an existing one, of either layout, is left as it is)."""
    db.execute(_SCHEMA)


def is_rowid_layout(db: sqlite3.Connection) -> bool:
    """True for a store created before the WITHOUT ROWID layout (a rowid table plus a separate key index)."""
    sql = db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='translations'").fetchone()
    return sql is not None and "WITHOUT ROWID" not in sql[0].upper()


def store_path(cache_root: str | Path) -> Path:
    return Path(cache_root) / STORE_DIR / STORE_FILE


class TranslationStore:
    """Key-value store of finished translations; `put_many` commits at once (one transaction per call)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process kill
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        create_schema(self._db)

    @classmethod
    def for_cache(cls, cache_root: str | Path) -> "TranslationStore":
        return cls(store_path(cache_root))

    def get_many(self, backend: str, engine: str, pivot: str, direction: str,
                 sources: Iterable[str]) -> dict[str, str]:
        """Stored translations of `sources` (missing ones are absent from the result)."""
        wanted = set(sources)
        if not wanted:
            return {}
        out: dict[str, str] = {}
        items = sorted(wanted)
        for i in range(0, len(items), LOOKUP_CHUNK):  # sorted: neighbouring keys share B-tree pages
            chunk = items[i:i + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT source, target FROM translations WHERE backend=? AND engine=? AND pivot=? "
                f"AND direction=? AND source IN ({marks})", (backend, engine, pivot, direction, *chunk))
            out.update(rows.fetchall())
        return out

    def put_many(self, backend: str, engine: str, pivot: str, direction: str,
                 pairs: Iterable[tuple[str, str]]) -> None:
        """Insert (source, target) pairs and commit before returning, so a kill right after loses nothing."""
        now = time.time()
        rows = [(backend, engine, pivot, direction, s, t, now) for s, t in pairs]
        if not rows:
            return
        with self._db:  # BEGIN ... COMMIT
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO translations VALUES (?,?,?,?,?,?,?)", rows)

    @property
    def layout(self) -> str:
        """"rowid" (a store from before the WITHOUT ROWID layout, used as it is) or "without rowid"."""
        return "rowid" if is_rowid_layout(self._db) else "without rowid"

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM translations").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TranslationStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

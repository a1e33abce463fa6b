"""The persistent translation store: SQLite in WAL mode under `CACHE_DIR/translations/`.

Why: back-translation is the slowest and the only rate-limited stage (Google answers 429 after a few thousand
requests). Every translation is committed as it arrives, keyed by (backend, engine/model, pivot, direction,
source text), so an interrupted or rate-limited run resumes without asking twice, and a second dataset sharing
captions (AudioCaps after Clotho) reuses them. WAL lets a reader (preview, another prep) run beside a writer.
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
)
"""


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
        self._db.execute(_SCHEMA)

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
        for i in range(0, len(items), 500):  # SQLite caps the number of bound parameters
            chunk = items[i:i + 500]
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

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM translations").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TranslationStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

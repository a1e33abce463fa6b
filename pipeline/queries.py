"""The query file of a retrieval challenge (DCASE 2022–2025 evaluation form): a CSV with a `caption` column.

Why verbatim and normalised side by side: the official scorer finds a submission's rows by the caption's exact
text, so the submission repeats it byte for byte, while the text encoder sees it normalised as training captions
were. Other columns are ignored. A row without words is an error naming the row, before any audio is decoded: a
silently skipped query would be scored as a miss.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audioret.pipeline.datasets import DatasetError, _read_csv
from audioret.pipeline.text import normalise_caption

QUERY_COLUMN = "caption"


@dataclass(frozen=True)
class Query:
    text: str  # exactly as in the file
    normalised: str  # what the text encoder sees
    where: str  # FILE:LINE, for messages


def read_queries(path: str | Path, encoding: str | None = None) -> list[Query]:
    """Every query of `path` in file order (UTF-8 unless `encoding`); DatasetError (one line, naming file and row)
    on a bad file or row, a quote left open included (it would swallow the queries after it)."""
    path = Path(path)
    header, rows = _read_csv(path, row="query", encoding=encoding)
    if QUERY_COLUMN not in [h.lower() for h in header]:
        raise DatasetError(f"{path}: no {QUERY_COLUMN} column (header: {', '.join(header) or 'none'}); expected "
                           "a CSV with a caption column, one query per row")
    queries = []
    for line, row in rows:
        key = next(k for k in row if k is not None and k.strip().lower() == QUERY_COLUMN)
        text = row[key] or ""
        if not text.strip():
            raise DatasetError(f"{path}:{line}: empty caption; every row needs a query text")
        normalised = normalise_caption(text)
        if not normalised:
            raise DatasetError(f"{path}:{line}: caption {text!r} has no words once punctuation is removed")
        queries.append(Query(text, normalised, f"{path}:{line}"))
    return queries  # never empty: _read_csv refused a header-only file

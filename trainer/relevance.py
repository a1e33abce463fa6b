"""Relevance files for multi-positive evaluation (`audioret eval --relevance FILE.csv`): which clips answer a query.

Why: since DCASE 2025 a query may have several matching clips, so "each caption's own clip" is no longer the whole
truth. Reads the DCASE 2025 form (`query,audio_filenames`, a list literal per row; literals only, nothing is
executed) and a long form (`query,file_name[,score]`) through cache/text_files.py, and matches queries and files
as the 2025 baseline does. Queries or files the split lacks are counted and listed, never dropped. docs/evaluation.md.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from audioret.cache.text_files import TextFileError, read_csv

WIDE_COLUMN = "audio_filenames"
SHOWN = 5  # names listed per problem in reports


class RelevanceError(ValueError):
    """The relevance file cannot be used (unreadable, wrong header, a malformed row, nothing matches)."""


@dataclass
class Relevance:
    """Query text (verbatim) → relevant file names (file order, no duplicates); queries keep file order."""

    source: str
    queries: dict[str, list[str]] = field(default_factory=dict)

    def add(self, query: str, names: Sequence[str]) -> None:
        known = self.queries.setdefault(query, [])
        known.extend(n for n in names if n not in known)


def _rows(path: Path, encoding: str | None = None) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(line, row)]) under the rules of cache/text_files.py (encoding, no field spanning lines)."""
    try:
        header, rows = read_csv(path, encoding=encoding)
    except TextFileError as exc:
        raise RelevanceError(str(exc)) from None
    return [h.strip() for h in header], rows


def _file_list(path: Path, line: int, value: str | None) -> list[str]:
    """A list literal of file names (DCASE 2025 form) → stripped names."""
    try:
        names = ast.literal_eval((value or "").strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        names = None
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise RelevanceError(f"{path}:{line}: {WIDE_COLUMN} must be a list of file names like "
                             f"\"['a.wav', 'b.wav']\", got {str(value)[:60]!r}")
    return [n.strip() for n in names if n.strip()]


def _is_relevant(path: Path, line: int, score: str | None) -> bool:
    if score is None or not score.strip():
        return True
    try:
        return float(score) > 0
    except ValueError:
        raise RelevanceError(f"{path}:{line}: score {score!r} is not a number") from None


def read_relevance(path: str | Path, encoding: str | None = None) -> Relevance:
    """Read either form (chosen by the header; UTF-8 unless `encoding`); raises RelevanceError naming the file
    (and line)."""
    path = Path(path)
    header, rows = _rows(path, encoding)
    rows = [(line, {k.strip() if isinstance(k, str) else k: v for k, v in row.items()}) for line, row in rows]
    if "query" not in header or (WIDE_COLUMN not in header and "file_name" not in header):
        raise RelevanceError(f"{path}: a relevance file needs the columns query,{WIDE_COLUMN} (DCASE 2025) or "
                             f"query,file_name[,score]; its header is {','.join(header) or '(empty)'}")
    rel = Relevance(str(path))
    for line, row in rows:
        query = row.get("query")
        if query is None or not query.strip():
            raise RelevanceError(f"{path}:{line}: empty query")
        if WIDE_COLUMN in header:
            rel.add(query, _file_list(path, line, row.get(WIDE_COLUMN)))
        else:
            name = (row.get("file_name") or "").strip()
            if not name:
                raise RelevanceError(f"{path}:{line}: empty file_name")
            rel.add(query, [name] if _is_relevant(path, line, row.get("score")) else [])
    if not rel.queries:
        raise RelevanceError(f"{path}: no queries")
    return rel


@dataclass
class RelevanceMatch:
    """A relevance file resolved against one split: rows of the similarity matrix and their relevant columns."""

    source: str
    n_queries: int
    query_rows: list[int]
    relevant: list[list[int]]
    missing_queries: list[str]
    missing_files: list[str]
    without_relevant: list[str]
    trimmed_queries: list[str]

    def report(self) -> dict[str, Any]:
        """JSON-able summary: counts plus the first few names of each problem."""
        def listed(names: list[str]) -> dict[str, Any]:
            return {"count": len(names), "first": names[:SHOWN]}
        return {"file": self.source, "queries": self.n_queries, "scored": len(self.query_rows),
                "queries_not_in_split": listed(self.missing_queries),
                "files_not_in_split": listed(self.missing_files),
                "queries_without_relevant_clip": listed(self.without_relevant),
                "queries_matched_after_trimming_whitespace": listed(self.trimmed_queries)}


def match_relevance(rel: Relevance, caption_texts: Sequence[str], clip_ids: Sequence[str], split: str,
                    ) -> RelevanceMatch:
    """Resolve query texts to caption rows and file names to clip columns; raises when nothing can be scored."""
    exact: dict[str, int] = {}
    trimmed: dict[str, int] = {}
    for i, text in enumerate(caption_texts):
        exact.setdefault(text, i)
        trimmed.setdefault(text.strip(), i)
    column = {cid: j for j, cid in enumerate(clip_ids)}
    rows, relevant, missing_q, without, trimmed_q = [], [], [], [], []
    missing_f: dict[str, None] = {}
    for query, names in rel.queries.items():
        row = exact.get(query)
        if row is None:
            row = trimmed.get(query.strip())
            if row is None:
                missing_q.append(query)
                continue
            trimmed_q.append(query)
        cols = []
        for n in names:
            if n in column:
                cols.append(column[n])
            else:
                missing_f[n] = None
        if not cols:
            without.append(query)
            continue
        rows.append(row)
        relevant.append(cols)
    if not rows:
        raise RelevanceError(f"{rel.source}: none of its {len(rel.queries)} queries can be scored on split "
                             f"{split!r} ({len(missing_q)} are not captions of it, {len(without)} have no "
                             "relevant clip in it); is it the relevance file of this split?")
    return RelevanceMatch(rel.source, len(rel.queries), rows, relevant, missing_q, list(missing_f), without,
                          trimmed_q)

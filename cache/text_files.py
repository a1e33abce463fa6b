"""The text files users hand the tool (manifests, caption CSVs, query and relevance files), read one way.

Why in the bottom layer: pipeline/ and trainer/ both read such CSVs and may not import each other. UTF-8 (a BOM
tolerated) unless `--encoding` names another; a byte that does not decode is reported by line and column. No field
may span lines: an unterminated quote made csv read every later line into one field, silently. docs/data.md.
"""
from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

DEFAULT_ENCODING = "utf-8"
ENCODING_HINT = "if the file is in another encoding, name it with --encoding (e.g. --encoding cp949)"


class TextFileError(ValueError):
    """A text file cannot be read as asked; the message is one line naming the file (and line)."""


def check_encoding(name: str | None) -> str | None:
    """The codec's canonical name (None or UTF-8 → None: the default); ValueError for an unknown name."""
    if name is None or not str(name).strip():
        return None
    try:
        canonical = codecs.lookup(str(name).strip()).name
    except LookupError:
        raise ValueError(f"unknown encoding {name!r} (Python codec names: utf-8, cp949, latin-1, ...)") from None
    return None if canonical in ("utf-8", "utf-8-sig") else canonical


def read_text(path: str | Path, encoding: str | None = None, what: str | None = None) -> str:
    """A whole text file decoded with `encoding` (default UTF-8, BOM tolerated), or TextFileError naming the file,
    the line and column of the first byte that does not decode, and `what` the file is (e.g. "exclusion list")."""
    path = Path(path)
    try:
        codec = check_encoding(encoding) or "utf-8-sig"
    except ValueError as exc:
        raise TextFileError(f"{path}: {exc}") from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TextFileError(f"{path}: cannot read{' ' + what if what else ''} ({exc.strerror})") from None
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        name = "UTF-8" if codec == "utf-8-sig" else codec
        is_not = f"{what} is not" if what else "not"
        hint = ENCODING_HINT if codec == "utf-8-sig" else "check --encoding"
        raise TextFileError(f"{path}:{line}: {is_not} {name} text ({exc.reason}: byte {exc.start}, column {column}); "
                            f"{hint}") from None


def read_csv(path: str | Path, text: str | None = None,
             encoding: str | None = None) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header as written, [(line the row starts on, {column: value})]) of a CSV, like csv.DictReader (blank lines
    skipped, missing fields None, extra fields under the key None), with the module docstring's quoting rules.
    `text`: the file's text when the caller has already read it."""
    path = Path(path)
    text = read_text(path, encoding) if text is None else text
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, dict]] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise TextFileError(f"{path}:{start}: malformed CSV quoting in the row starting here ({exc}, line "
                                f"{reader.line_num}); "
                                "a quote opened in this row is not closed where its field ends") from None
        _check_single_line(path, start, reader.line_num, row)
        if not row:
            continue
        if header is None:
            header = row
            continue
        record: dict = dict(zip(header, row, strict=False))
        if len(row) > len(header):
            record[None] = row[len(header):]
        for name in header[len(row):]:
            record[name] = None
        rows.append((start, record))
    return list(header or []), rows


def _check_single_line(path: Path, start: int, end: int, row: list[str]) -> None:
    """TextFileError when a field of the row that starts on line `start` holds a line break (see the module
    docstring): most often a quote that is never closed, which swallows the lines after it."""
    if end == start:
        return
    field = next((f for f in row if "\n" in f or "\r" in f), None)
    if field is None:
        return
    shown = field.splitlines()[0][:40] if field.strip() else ""
    raise TextFileError(f"{path}:{start}: a field runs over lines {start}-{end} ({shown!r}...): a quote opened on "
                        f"line {start} is not closed on that line (unterminated quote?); no field may span lines")

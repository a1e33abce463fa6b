"""Dataset readers: turn a dataset on disk into `ClipRecord`s (clip id, split, audio path, captions).

Every `prep` stage starts here, so clip ids and splits mean the same thing in the audio and caption caches.
A row whose audio is missing (or that cannot be read) becomes a *problem* entry, never an exception: one bad row in
a 6,000-clip dataset must not stop the other 5,999. Readers for further datasets plug in with `register_dataset`
(AudioCaps lives in its own module) instead of growing this file.
"""
from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from audioret.cache.text_files import TextFileError, check_encoding, read_csv, read_text

CLOTHO_SPLITS = ("development", "validation", "evaluation")
#: Extensions a reader that knows only a clip's stem (AudioCaps, WavCaps) tries, in this order.
AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".mp3")
#: Caption columns, any case: caption_1..caption_N, and the spellings people write for them (caption1,
#: "Caption 1", caption-1) or for a single caption (caption, captions); see `_captions_of`.
_CAPTION_COLUMN = re.compile(r"^captions?[ _-]?(\d*)$", re.IGNORECASE)
CAPTION_COLUMNS_HELP = "caption_1..caption_N (or caption, caption1, Caption_1: any case)"


class DatasetError(Exception):
    """The dataset as a whole cannot be read (no captions file, unknown dataset kind, bad manifest header)."""


@dataclass
class ClipRecord:
    """One audio clip of a dataset. `clip_id` is unique within the dataset and stable across runs."""

    clip_id: str
    split: str
    path: Path
    captions: list[str] = field(default_factory=list)


Problems = list[dict]
Loader = Callable[..., tuple[list[ClipRecord], Problems]]
DATASET_KINDS: dict[str, Loader] = {}
#: dataset kind → the subset names `--subsets` may pick (kinds without any take no `subsets` argument)
DATASET_SUBSETS: dict[str, tuple[str, ...]] = {}


def register_dataset(name: str, loader: Loader, subsets: tuple[str, ...] = ()) -> None:
    """Make `load_records(name, ...)` call `loader(root, manifest, splits) -> (records, problems)`.

    A kind made of parts a user may pick (WavCaps' sources) names them in `subsets`; its loader is then also
    called with `subsets=[...]` when the user picked some, and every loader with `encoding=NAME` when the user
    named the text files' encoding (`--encoding`; the built-in readers all take it).
    """
    DATASET_KINDS[name] = loader
    DATASET_SUBSETS[name] = tuple(subsets)


def check_subsets(dataset: str, subsets: list[str] | None) -> None:
    """DatasetError unless every name in `subsets` is a subset of `dataset` (one line, listing the choices)."""
    if not subsets:
        return
    known = DATASET_SUBSETS.get(dataset, ())
    if not known:
        with_subsets = sorted(k for k, v in DATASET_SUBSETS.items() if v)
        raise DatasetError(f"dataset {dataset!r} has no subsets (--subsets applies to {', '.join(with_subsets)})")
    unknown = [s for s in subsets if s not in known]
    if unknown:
        raise DatasetError(f"unknown {dataset} subset(s) {', '.join(unknown)}; choose from {', '.join(known)}")


MISSING_AUDIO = "audio file missing"  # how every reader starts the error of a clip whose audio is not there


def problem(file: str | Path, split: str | None, error: str, clip_id: str | None = None) -> dict:
    """The one shape of a problem entry (also a line of `failures.jsonl`); `clip_id` where the reader knows the id
    the clip would have had (an exclusion list matches missing clips by it)."""
    entry = {"file": str(file), "split": split, "error": error}
    if clip_id is not None:
        entry["clip_id"] = clip_id
    return entry


def load_records(dataset: str, root: str | Path, manifest: str | Path | None = None,
                 splits: list[str] | None = None, subsets: list[str] | None = None,
                 encoding: str | None = None) -> tuple[list[ClipRecord], Problems]:
    """Records of `dataset` sorted by clip id, plus problem entries for rows that cannot be used.

    Duplicate clip ids are reported (the first row wins) because shard membership and caption lookup both key on
    the id; duplicates are judged before the `splits` filter so a clip id never changes meaning with the filter.
    `splits` (None: all) filters after loading so every reader honours it the same way; `subsets` (None: the
    reader's default) is handed to the reader, which alone knows which files make a subset. `encoding` (None:
    UTF-8) is the text encoding of the dataset's CSV / JSON files.
    """
    if dataset not in DATASET_KINDS:
        raise DatasetError(f"unknown dataset kind {dataset!r}; known: {', '.join(sorted(DATASET_KINDS))}")
    check_subsets(dataset, subsets)
    _LISTINGS.clear()  # folder listings are trusted for one read only
    extra: dict = {"subsets": list(subsets)} if subsets else {}
    try:
        encoding = check_encoding(encoding)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    if encoding:
        extra["encoding"] = encoding
    records, problems = DATASET_KINDS[dataset](Path(root), Path(manifest) if manifest else None, splits, **extra)
    wanted = set(splits) if splits else None
    seen: dict[str, ClipRecord] = {}
    for rec in records:
        if rec.clip_id in seen:
            problems.append(problem(rec.path, rec.split, f"duplicate clip id {rec.clip_id!r} "
                                                         f"(already in split {seen[rec.clip_id].split!r})"))
            continue
        seen[rec.clip_id] = rec
    kept = [r for r in seen.values() if wanted is None or r.split in wanted]
    return sorted(kept, key=lambda r: r.clip_id), problems


def _captions_of(row: dict) -> list[str]:
    """caption_1..caption_N in numeric order (not string order: caption_10 after caption_9), blanks dropped.

    Any case and the usual spellings (`_CAPTION_COLUMN`): `caption1`, `Caption_1`, and a lone `caption` (the
    WavCaps / DCASE query form, read as caption 1; with numbered columns beside it, it comes first). Kept
    verbatim, surrounding spaces included: they are the caption's identity in the DCASE submission (the official
    scorer looks captions up by exact text; some of Clotho's evaluation captions end in a space). Normalisation
    for the model happens later (pipeline/text.py).
    """
    numbered = []
    for key, value in row.items():
        m = _CAPTION_COLUMN.match(str(key or "").strip())
        if m and value is not None and not isinstance(value, (list, dict)) and str(value).strip():
            numbered.append((int(m.group(1) or 0), str(value)))
    if isinstance(row.get("captions"), list):  # JSONL may also carry a plain list
        numbered += [(10**6 + i, str(c)) for i, c in enumerate(row["captions"]) if str(c).strip()]
    return [text for _, text in sorted(numbered)]


def _read_text(path: Path, what: str | None = None, encoding: str | None = None) -> str:
    """A whole text file (UTF-8 with a BOM tolerated, or `encoding`) or a one-line DatasetError naming the file,
    and for a byte that does not decode its line, column and `--encoding` (cache/text_files.py); `what` the file
    is (e.g. "exclusion list") when its role is not obvious from the command."""
    try:
        return read_text(path, encoding, what)
    except TextFileError as exc:
        raise DatasetError(str(exc)) from None


def check_not_empty(path: Path, header: list[str] | None, n_rows: int, row: str = "clip") -> None:
    """Refuse a table with no header (0-byte or blank file) or no rows below its header: reading "nothing" as a
    dataset of 0 clips would only fail later, far from the cause (an empty split, a truncated download).
    `row` names what one row is ("clip", "query") for the message."""
    if not header:
        raise DatasetError(f"{path}: file is empty (no header line); expected a CSV with a header and one row "
                           f"per {row}")
    if n_rows == 0:
        raise DatasetError(f"{path}: no rows below the header ({', '.join(header)}); the file lists no {row} "
                           "to read")


def _read_csv(path: Path, text: str | None = None, row: str = "clip",
              encoding: str | None = None) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(line number, row)]) of a CSV (UTF-8 unless `encoding`); a field spanning lines or a quote left
    open is a DatasetError naming the row (cache/text_files.py), and so is an empty or header-only file (`row`:
    what one row is, for that message)."""
    try:
        header, rows = read_csv(path, _read_text(path, encoding=encoding) if text is None else text)
    except TextFileError as exc:
        raise DatasetError(str(exc)) from None
    header = [h.strip() for h in header]
    check_not_empty(path, header, len(rows), row)
    return header, rows


# The same readers for the dataset kinds defined in other modules (AudioCaps, WavCaps).
read_table, read_dataset_text = _read_csv, _read_text


def _nfc_names(folder: Path) -> dict[str, str]:
    """NFC form → actual name of the entries of `folder` (cached per folder: listed once per dataset read)."""
    key = str(folder)
    if key not in _LISTINGS:
        try:
            _LISTINGS[key] = {unicodedata.normalize("NFC", n): n for n in os.listdir(folder)}
        except OSError:
            _LISTINGS[key] = {}
    return _LISTINGS[key]


_LISTINGS: dict[str, dict[str, str]] = {}


def locate(path: Path) -> Path:
    """`path`, or the file the file system holds under another Unicode normal form of the same name.

    Why: CSVs (Clotho's included) write names in NFC, but an archive unpacked on macOS (or copied from it) stores
    them in NFD, and Linux compares bytes: "café.wav" would be "missing" although it is right there. ASCII names
    never take the slow path.
    """
    if os.path.lexists(path) or str(path).isascii():
        return path
    for form in ("NFC", "NFD"):
        alt = Path(unicodedata.normalize(form, str(path)))
        if os.path.lexists(alt):
            return alt
    parent = path.parent if os.path.isdir(path.parent) else locate(path.parent)
    real = _nfc_names(parent).get(unicodedata.normalize("NFC", path.name)) if os.path.isdir(parent) else None
    return parent / real if real else path


def _check_audio(path: Path, split: str | None, problems: Problems) -> bool:
    if path.is_file():
        return True
    problems.append(problem(path, split, MISSING_AUDIO if not path.exists() else "not a regular file"))
    return False


def load_clotho(root: Path, manifest: Path | None = None, splits: list[str] | None = None,
                encoding: str | None = None) -> tuple[list[ClipRecord], Problems]:
    """Clotho v2.1: `clotho_captions_<split>.csv` (file_name, caption_1..5) + audio in `<split>/`.

    Without `splits`, every split whose captions CSV exists is read; a requested split without its CSV is an error.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root is not a directory")
    present = [s for s in CLOTHO_SPLITS if (root / f"clotho_captions_{s}.csv").is_file()]
    wanted = list(splits) if splits else present
    missing = [s for s in wanted if s not in present]
    if missing or not wanted:
        raise DatasetError(f"{root}: no clotho_captions_{{{','.join(missing or CLOTHO_SPLITS)}}}.csv "
                           "(expected the Clotho v2.1 layout)")
    records: list[ClipRecord] = []
    problems: Problems = []
    for split in wanted:
        csv_path = root / f"clotho_captions_{split}.csv"
        header, rows = _read_csv(csv_path, encoding=encoding)
        if "file_name" not in header:
            raise DatasetError(f"{csv_path}: no file_name column (header: {', '.join(header)})")
        for line, row in rows:
            name = (row.get("file_name") or "").strip()
            if not name:
                problems.append(problem(f"{csv_path}:{line}", split, "empty file_name"))
                continue
            path = locate(root / split / name)
            if _check_audio(path, split, problems):
                records.append(ClipRecord(name, split, path, _captions_of(row)))
    return records, problems


def _manifest_rows(path: Path, encoding: str | None = None) -> list[tuple[str, dict]]:
    """(location, row) of a CSV or JSONL manifest; JSONL when the suffix says so or the first byte is `{`."""
    text = _read_text(path, encoding=encoding)
    if path.suffix.lower() not in {".jsonl", ".ndjson"} and not text.lstrip().startswith("{"):
        header, rows = _read_csv(path, text)
        for col in ("split", "file_name"):
            if col not in header:
                raise DatasetError(f"{path}: manifest has no {col} column (header: {', '.join(header)})")
        return [(f"{path}:{line}", row) for line, row in rows]
    out = []
    for i, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may sit inside a JSON string
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            row = {"__error__": f"invalid JSON ({exc.msg})"}
        if not isinstance(row, dict):
            row = {"__error__": "line is not a JSON object"}
        out.append((f"{path}:{i}", row))
    if not out:
        raise DatasetError(f"{path}: file is empty (no JSON lines); expected one object per clip")
    return out


def table_columns(path: Path, encoding: str | None = None) -> list[str]:
    """The columns of a CSV manifest (its header) or a JSONL one (every key its rows use), for messages."""
    keys: dict[str, None] = {}
    for _, row in _manifest_rows(path, encoding):
        keys.update((str(k), None) for k in row if k is not None and k != "__error__")
    return list(keys)


def no_captions_error(dataset: str, root: Path, manifest: Path | None, n_clips: int,
                      encoding: str | None = None) -> DatasetError:
    """The error of a dataset whose clips have no caption at all (`prep captions` would cache nothing): it names
    the columns captions are read from and, for a manifest, the columns the file has."""
    source, found = Path(manifest or root), ""
    if dataset == "manifest":
        source = Path(manifest) if manifest else _default_manifest(Path(root))
        found = f"; its columns are: {', '.join(table_columns(source, encoding)) or 'none'}"
    return DatasetError(f"{source}: none of the {n_clips} clip(s) has a caption; captions are read from the "
                        f"columns {CAPTION_COLUMNS_HELP}{found}")


def _default_manifest(root: Path) -> Path:
    for name in ("manifest.csv", "manifest.jsonl"):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"{root}: no --manifest given and no manifest.csv / manifest.jsonl in the root")


def load_manifest(root: Path, manifest: Path | None = None, splits: list[str] | None = None,
                  encoding: str | None = None) -> tuple[list[ClipRecord], Problems]:
    """Generic manifest (CSV or JSONL): `split`, `file_name` (relative to the manifest or absolute),
    `caption_1..caption_N` with any N ≥ 1. The clip id is `file_name` exactly as written."""
    manifest = manifest or _default_manifest(root)
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: manifest file not found")
    base = manifest.resolve().parent
    records: list[ClipRecord] = []
    problems: Problems = []
    for where, row in _manifest_rows(manifest, encoding):
        if "__error__" in row:
            problems.append(problem(where, None, row["__error__"]))
            continue
        name = str(row.get("file_name") or "").strip()
        split = str(row.get("split") or "").strip()
        if not name or not split:
            problems.append(problem(where, split or None, "row needs both split and file_name"))
            continue
        path = locate(Path(name) if Path(name).is_absolute() else base / name)
        if _check_audio(path, split, problems):
            records.append(ClipRecord(name, split, path, _captions_of(row)))
    return records, problems


def split_list(text: str | None) -> list[str] | None:
    """`"a,b"` / `"a b"` → ["a", "b"]; empty or None → None (all splits)."""
    if not text:
        return None
    parts = [p for p in re.split(r"[,\s]+", text) if p]
    return parts or None


def known_datasets() -> Iterable[str]:
    return sorted(DATASET_KINDS)


register_dataset("clotho", load_clotho)
register_dataset("manifest", load_manifest)

# Readers defined in their own modules register themselves on import.
import audioret.pipeline.audiocaps  # noqa: E402,F401  (registers "audiocaps")
import audioret.pipeline.folder  # noqa: E402,F401  (registers "folder")
import audioret.pipeline.wavcaps  # noqa: E402,F401  (registers "wavcaps")

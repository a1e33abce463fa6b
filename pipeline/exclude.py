"""Exclusion lists (`prep audio --exclude FILE`, `prep captions --exclude FILE`): clips removed before caching.

Why: the DCASE task forbids training on sounds that overlap its evaluation data and publishes the list of them.
Removing them in `prep` makes the rule hold for every run trained on the cache, and the list's content hash joins
the cache key, so a cache made without the list (or with another one) is never mistaken for this one. Accepted
files and matching rules: docs/data.md.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from audioret.pipeline.datasets import MISSING_AUDIO, ClipRecord, DatasetError, Problems, _read_text
from audioret.pipeline.wavcaps import SOURCES

CSV_COLUMNS = ("sound_id", "file_name", "fname", "id", "freesound_id")
#: WavCaps source folders whose numeric file names are not Freesound ids (pipeline/wavcaps.py SOURCES).
NOT_FREESOUND_FOLDERS = frozenset(folder for folder, _ in SOURCES.values() if folder != "FreeSound")
NOT_FOUND_KEPT = 100  # not-found entries stored in the manifest (the count is always exact)


@dataclass(frozen=True)
class ExclusionList:
    """The normalised entries of one file and the sha256 that goes into cache keys."""

    path: Path
    entries: frozenset[str]

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(sorted(self.entries)).encode("utf-8")).hexdigest()


@dataclass
class ExclusionReport:
    """What applying a list did; stored in the cache manifest (`extra["exclude"]`) and printed by the CLI."""

    file: str
    sha256: str
    n_entries: int
    removed: int = 0
    not_found: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "n_entries": self.n_entries, "removed": self.removed,
                "n_not_found": len(self.not_found), "not_found": self.not_found[:NOT_FOUND_KEPT]}

    def summary(self) -> str:
        line = f"exclude {self.file}: {self.removed} clip(s) removed; {len(self.not_found)} of {self.n_entries} " \
               "entries matched no clip"
        if self.not_found:
            line += f" (e.g. {', '.join(self.not_found[:5])})"
        return line


def _clean(value: object) -> str:
    return unicodedata.normalize("NFC", str(value)).strip()


def _json_entries(path: Path, text: str) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno}); expected a list of names or "
                           "an object of lists") from None
    lists = list(data.values()) if isinstance(data, dict) else [data]
    if not all(isinstance(v, list) and all(isinstance(x, (str, int)) for x in v) for v in lists):
        raise DatasetError(f"{path}: expected a JSON list of names/ids or an object whose values are such lists")
    return [str(x) for v in lists for x in v]


def _csv_entries(path: Path, text: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or not rows[0]:
        raise DatasetError(f"{path}: empty CSV; expected a header row and one name or id per row")
    header = [h.strip().lower() for h in rows[0]]
    col = next((header.index(c) for c in CSV_COLUMNS if c in header), 0)
    return [row[col] for row in rows[1:] if len(row) > col]


def read_exclusion_list(path: str | Path) -> ExclusionList:
    """Parse an exclusion file (formats in the module docstring); DatasetError with the file named on failure."""
    path = Path(path)
    text = _read_text(path, "exclusion list")
    suffix = path.suffix.lower()
    if suffix == ".json":
        raw = _json_entries(path, text)
    elif suffix == ".csv":
        raw = _csv_entries(path, text)
    else:
        raw = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return ExclusionList(path, frozenset(e for e in map(_clean, raw) if e))


def _names_of(clip_id: str) -> tuple[str, ...]:
    """The names an entry may use for a clip: its id, its file name, the file name without extension (not for an
    all-digit name inside a WavCaps source other than FreeSound: those digits are not a Freesound id)."""
    path = PurePosixPath(clip_id.replace("\\", "/"))
    name = path.name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    names = [clip_id]
    if not (stem.isdigit() and len(path.parts) > 1 and path.parts[0] in NOT_FREESOUND_FOLDERS):
        names += [name, stem]
    return tuple(unicodedata.normalize("NFC", n) for n in names)


def apply_exclusions(records: list[ClipRecord], problems: Problems,
                     exclusion: ExclusionList) -> tuple[list[ClipRecord], Problems, ExclusionReport]:
    """Drop the records (and the missing-audio problems) an exclusion list names; report what matched nothing.

    A listed clip whose audio is missing is removed too, not reported: it was not wanted anyway.
    """
    hit: set[str] = set()

    def matches(names: tuple[str, ...]) -> bool:
        found = [n for n in names if n in exclusion.entries]
        hit.update(found)
        return bool(found)

    kept = [r for r in records if not matches(_names_of(r.clip_id))]
    removed = len(records) - len(kept)
    kept_problems = []
    for p in problems:
        if str(p.get("error", "")).startswith(MISSING_AUDIO) and \
                matches(_names_of(p.get("clip_id") or Path(p["file"]).name)):
            removed += 1
        else:
            kept_problems.append(p)
    report = ExclusionReport(str(exclusion.path), exclusion.sha256, len(exclusion.entries), removed,
                             sorted(exclusion.entries - hit))
    return kept, kept_problems, report


def exclude_from(records: list[ClipRecord], problems: Problems,
                 path: str | Path | None) -> tuple[list[ClipRecord], Problems, ExclusionReport | None]:
    """`apply_exclusions` with the list read from `path`; None: records unchanged and no report. The one entry
    point `prep audio` and `prep captions` share, so both remove exactly the same clips."""
    if path is None:
        return records, problems, None
    return apply_exclusions(records, problems, read_exclusion_list(path))

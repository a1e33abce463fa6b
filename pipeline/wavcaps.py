"""WavCaps reader (`--dataset wavcaps`): ~400k weakly-labelled clips from four sources, one caption each.

Reads the layout aac-datasets unpacks WavCaps to: one JSON metadata file per source and the audio per source
folder, each folder listed once. Clip ids are `<Source>/<file>` (unique across sources, whose small integer ids
collide; the stem is the source's own id, so a Freesound id list matches FreeSound clips). Every clip is in split
`train`; a missing source folder or file becomes a problem entry (exit 3). Layout and `--subsets`: docs/data.md.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from audioret.cache.splits import split_role
from audioret.pipeline.datasets import (
    AUDIO_EXTENSIONS,
    DATASET_KINDS,
    MISSING_AUDIO,
    ClipRecord,
    DatasetError,
    Problems,
    problem,
    read_dataset_text,
    register_dataset,
)

WAVCAPS_SPLIT = "train"
#: The role the trainer gives WavCaps' one split (Clotho names, cache/splits.py), as pipeline/audiocaps.py's does.
SPLIT_ROLES = {WAVCAPS_SPLIT: split_role(WAVCAPS_SPLIT)}
#: --subsets name → (source folder under json_files/ and Audio/, metadata file name)
SOURCES: dict[str, tuple[str, str]] = {
    "freesound": ("FreeSound", "fsd_final.json"),
    "bbc": ("BBC_Sound_Effects", "bbc_final.json"),
    "soundbible": ("SoundBible", "sb_final.json"),
    "audioset_sl": ("AudioSet_SL", "as_final.json"),
}


def find_base(root: Path) -> Path:
    """The folder holding json_files/ and Audio/: ROOT/WavCaps (aac-datasets) or ROOT itself."""
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root is not a directory")
    for base in (root / "WavCaps", root):
        if (base / "json_files").is_dir():
            return base
    raise DatasetError(f"{root}: no json_files/ folder (expected the WavCaps layout: WavCaps/json_files/<Source>/"
                       "*_final.json and WavCaps/Audio/<Source>/, as aac-datasets unpacks it)")


def metadata_path(base: Path, subset: str) -> Path:
    folder, file = SOURCES[subset]
    return base / "json_files" / folder / file


def read_entries(path: Path, encoding: str | None = None) -> list:
    """The entry list of one metadata file, or a one-line DatasetError naming the file."""
    try:
        data = json.loads(read_dataset_text(path, encoding=encoding))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not a WavCaps metadata file (invalid JSON: {exc})") from None
    entries = data.get("data") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise DatasetError(f"{path}: expected {{\"data\": [...]}} or a list of entries")
    return entries


def audio_stem(entry_id: str) -> str:
    """The audio file's stem of an entry id: AudioSet_SL ids carry the original `.wav`, the archives hold flac."""
    for ext in AUDIO_EXTENSIONS:
        if entry_id.lower().endswith(ext):
            return entry_id[: -len(ext)]
    return entry_id


def _read_source(base: Path, subset: str, explicit: bool, records: list[ClipRecord], problems: Problems,
                 encoding: str | None = None) -> None:
    folder, _ = SOURCES[subset]
    json_path = metadata_path(base, subset)
    entries = read_entries(json_path, encoding)
    audio_dir = base / "Audio" / folder
    if not audio_dir.is_dir():
        hint = "" if explicit else ", or leave the source out with --subsets"
        problems.append(problem(audio_dir, WAVCAPS_SPLIT, f"audio folder missing: all {len(entries)} {folder} clips "
                                                          f"skipped (unpack Zip_files/{folder} into it{hint})"))
        return
    present = set(os.listdir(audio_dir))
    for i, entry in enumerate(entries):
        where = f"{json_path}: data[{i}]"
        if not isinstance(entry, dict) or str(entry.get("id") or "").strip() == "":
            problems.append(problem(where, WAVCAPS_SPLIT, "entry has no id"))
            continue
        stem = audio_stem(str(entry["id"]).strip())
        caption = str(entry.get("caption") or "").strip()
        if not caption:
            problems.append(problem(where, WAVCAPS_SPLIT, f"entry {stem!r} has no caption"))
            continue
        name = next((stem + ext for ext in AUDIO_EXTENSIONS if stem + ext in present), None)
        if name is None:
            problems.append(problem(audio_dir / f"{stem}.flac", WAVCAPS_SPLIT, MISSING_AUDIO, f"{folder}/{stem}.flac"))
            continue
        records.append(ClipRecord(f"{folder}/{name}", WAVCAPS_SPLIT, audio_dir / name, [caption]))


def load_wavcaps(root: Path, manifest: Path | None = None, splits: list[str] | None = None,
                 subsets: list[str] | None = None, encoding: str | None = None) -> tuple[list[ClipRecord], Problems]:
    """WavCaps records of the chosen sources (default: every source whose metadata file exists)."""
    if manifest is not None:
        return DATASET_KINDS["manifest"](root, manifest, splits, encoding=encoding)
    unknown = [s for s in splits or [] if s != WAVCAPS_SPLIT]
    if unknown:
        raise DatasetError(f"{root}: WavCaps has only the split {WAVCAPS_SPLIT!r} (asked for {', '.join(unknown)})")
    base = find_base(root)
    chosen = list(subsets) if subsets else [s for s in SOURCES if metadata_path(base, s).is_file()]
    if not chosen:
        raise DatasetError(f"{base / 'json_files'}: no WavCaps metadata file "
                           f"({', '.join(f'{d}/{f}' for d, f in SOURCES.values())})")
    records: list[ClipRecord] = []
    problems: Problems = []
    for subset in chosen:
        if not metadata_path(base, subset).is_file():
            raise DatasetError(f"{metadata_path(base, subset)}: metadata file of --subsets {subset} not found")
        _read_source(base, subset, bool(subsets), records, problems, encoding)
    return records, problems


register_dataset("wavcaps", load_wavcaps, subsets=tuple(SOURCES))

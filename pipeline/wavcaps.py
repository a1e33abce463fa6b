"""WavCaps reader (`--dataset wavcaps`): ~400k weakly-labelled clips from four sources, one caption each.

WavCaps (Mei et al. 2023, Hugging Face dataset `cvssp/WavCaps`) ships one JSON file of metadata per source and
the audio as zip archives per source. The layout read here is the one aac-datasets unpacks to (its
`src/aac_datasets/datasets/functional/wavcaps.py` and `datasets/wavcaps.py`, read for this module):

  ROOT/WavCaps/json_files/<Source>/<x>_final.json    (or ROOT/json_files/... with ROOT = the WavCaps folder)
  ROOT/WavCaps/Audio/<Source>/<file>                  the flac files of Zip_files/<Source>/, flattened

  --subsets name   <Source> folder       metadata file    audio file of an entry
  freesound        FreeSound             fsd_final.json   <id>.flac (id = the Freesound sound id, e.g. 12345)
  bbc              BBC_Sound_Effects     bbc_final.json   <id>.flac
  soundbible       SoundBible            sb_final.json    <id>.flac
  audioset_sl      AudioSet_SL           as_final.json    <id without .wav>.flac (ids look like Y...wav)

A metadata file is `{"data": [{"id", "caption", "duration", ...}, ...]}` (older copies on GitHub are a bare
list; both are read). Only `id` and `caption` are used: the other fields (audio, download_link, file_name,
description, tags, author, href) differ by source and say nothing the cache needs. Audio is looked up by the
id's stem with .flac first, then .wav/.ogg/.mp3 (a re-encoded copy); each source folder is listed once
instead of stat-ing 262k FreeSound files one by one.

Clip ids are `<Source>/<file>`, e.g. `FreeSound/12345.flac`: unique across sources (SoundBible and FreeSound
ids are both small integers) and stable. The file name's stem is the source's own id, so an exclusion list of
Freesound ids (the DCASE list of FreeSound clips that overlap Clotho's evaluation data, e.g. aac-datasets'
`blacklist_clotho.full.v2.csv`, column `id`) matches a FreeSound clip by `Path(clip_id).stem`; such an id list
should be applied to `FreeSound/...` clips only, because a SoundBible id can be the same number.

WavCaps is training data only: every clip is in split `train`, which the trainer reads as the development role
(SPLIT_ROLES). A source without its metadata file is not read (an error when named with --subsets); a source
whose audio folder is absent, and every entry whose audio file is absent, become problem entries, so prep
exits 3 with the list, as for every dataset.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from audioret.cache.splits import split_role
from audioret.pipeline.datasets import (AUDIO_EXTENSIONS, DATASET_KINDS, MISSING_AUDIO, ClipRecord, DatasetError, Problems,
                               problem, register_dataset)

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


def read_entries(path: Path) -> list:
    """The entry list of one metadata file, or a one-line DatasetError naming the file."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
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


def _read_source(base: Path, subset: str, explicit: bool, records: list[ClipRecord], problems: Problems) -> None:
    folder, _ = SOURCES[subset]
    json_path = metadata_path(base, subset)
    entries = read_entries(json_path)
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
                 subsets: list[str] | None = None) -> tuple[list[ClipRecord], Problems]:
    """WavCaps records of the chosen sources (default: every source whose metadata file exists)."""
    if manifest is not None:
        return DATASET_KINDS["manifest"](root, manifest, splits)
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
        _read_source(base, subset, bool(subsets), records, problems)
    return records, problems


register_dataset("wavcaps", load_wavcaps, subsets=tuple(SOURCES))

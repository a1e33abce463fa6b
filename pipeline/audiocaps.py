"""AudioCaps reader (`--dataset audiocaps`): the paper's pretraining set, registered with `register_dataset`.

AudioCaps ships only CSVs (one row per caption); its audio comes from YouTube, so a real download always misses
clips, and those become problem entries (prep exits 3 with the list) instead of errors. A clip is `youtube_id` +
`start_time`, its captions ordered by `audiocap_id`; split names stay AudioCaps' own (`train`, `val`, `test`). The
layouts found under --root: docs/data.md.
"""
from __future__ import annotations

from collections import defaultdict
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
    read_table,
    register_dataset,
)

AUDIOCAPS_SPLITS = ("train", "val", "test")
#: The roles the trainer gives these splits (Clotho names, cache/splits.py); documentation and the CLI's summary use it.
SPLIT_ROLES = {split: split_role(split) for split in AUDIOCAPS_SPLITS}
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")


def _csv_dirs(root: Path) -> list[Path]:
    return [root, root / "csv_files_v1", root / "AUDIOCAPS" / "csv_files_v1"]


def _audio_dirs(root: Path) -> list[Path]:
    """Candidate parents of the split folders, the 32 kHz aac-datasets copy first (no resampling needed)."""
    out = [root / "audio"]
    for base in (root, root / "AUDIOCAPS"):
        rates = sorted(base.glob("audio_*Hz"), key=lambda p: (p.name != "audio_32000Hz", p.name))
        out += rates
    return out + [root]


def find_layout(root: Path, splits: list[str]) -> tuple[Path, dict[str, Path]]:
    """(folder holding the split CSVs, split → audio folder). Raises DatasetError naming what is missing."""
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root is not a directory")
    csv_dir = next((d for d in _csv_dirs(root) if all((d / f"{s}.csv").is_file() for s in splits)), None)
    if csv_dir is None:
        raise DatasetError(f"{root}: no AudioCaps {{{','.join(splits)}}}.csv (looked in root, csv_files_v1/, "
                           "AUDIOCAPS/csv_files_v1/)")
    audio: dict[str, Path] = {}
    for split in splits:
        found = next((d / split for d in _audio_dirs(root) if (d / split).is_dir()), None)
        # A split folder that does not exist at all means every clip is missing: reported per clip below.
        audio[split] = found or root / "audio" / split
    return csv_dir, audio


def clip_stem(youtube_id: str, start_time: str) -> str:
    """`{youtube_id}_{start_time}` with "30.0" written as "30" (how downloaders name the files)."""
    try:
        value = float(start_time)
        start = str(int(value)) if value.is_integer() else str(value)
    except ValueError:
        start = start_time
    return f"{youtube_id}_{start}"


def _find_audio(folder: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    return None


def _read_split(csv_path: Path, split: str, problems: Problems,
                encoding: str | None = None) -> dict[str, list[tuple[int, str]]]:
    """stem → [(audiocap_id, caption)] for one split CSV; malformed rows become problems."""
    header, rows = read_table(csv_path, encoding=encoding)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{csv_path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    clips: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for line, row in rows:
        where = f"{csv_path}:{line}"
        yt, start = (row.get("youtube_id") or "").strip(), (row.get("start_time") or "").strip()
        caption = row.get("caption") or ""  # verbatim, as pipeline/datasets.py _captions_of keeps it
        if not yt or not start:
            problems.append(problem(where, split, "row needs youtube_id and start_time"))
            continue
        try:
            cap_id = int((row.get("audiocap_id") or "").strip())
        except ValueError:
            cap_id = 10**12 + line  # keep file order after numbered rows
        entry = clips[clip_stem(yt, start)]  # a clip with only blank captions is still a clip
        if caption.strip():
            entry.append((cap_id, caption))
    return clips


def load_audiocaps(root: Path, manifest: Path | None = None, splits: list[str] | None = None,
                   encoding: str | None = None) -> tuple[list[ClipRecord], Problems]:
    """AudioCaps records (one per clip, captions grouped) and one problem per clip whose audio is missing."""
    if manifest is not None:
        return DATASET_KINDS["manifest"](root, manifest, splits, encoding=encoding)
    unknown = [s for s in splits or [] if s not in AUDIOCAPS_SPLITS]
    if unknown:
        raise DatasetError(f"{root}: unknown AudioCaps split(s) {', '.join(unknown)}; "
                           f"choose from {', '.join(AUDIOCAPS_SPLITS)}")
    if splits:
        wanted = list(splits)
    else:
        wanted = [s for s in AUDIOCAPS_SPLITS if any((d / f"{s}.csv").is_file() for d in _csv_dirs(root))]
        if not wanted:
            raise DatasetError(f"{root}: no AudioCaps train/val/test.csv (expected the AudioCaps CSVs)")
    csv_dir, audio_dirs = find_layout(root, wanted)
    records: list[ClipRecord] = []
    problems: Problems = []
    for split in wanted:
        for stem, captions in sorted(_read_split(csv_dir / f"{split}.csv", split, problems, encoding).items()):
            path = _find_audio(audio_dirs[split], stem)
            if path is None:
                problems.append(problem(audio_dirs[split] / f"{stem}.flac", split,
                                        f"{MISSING_AUDIO} ({stem}.{{flac,wav,ogg,mp3}}; YouTube takedown?)",
                                        f"{stem}.flac"))
                continue
            records.append(ClipRecord(path.name, split, path, [c for _, c in sorted(captions)]))
    return records, problems


register_dataset("audiocaps", load_audiocaps)

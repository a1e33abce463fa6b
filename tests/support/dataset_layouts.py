"""Small real datasets in the layouts the readers expect (pipeline/clotho, audiocaps.py, wavcaps.py), written into
a temp folder from the bundled recordings (tests/data/audio) and caption fixture (tests/data/captions): shared by
the reader tests, the prep tests and the three-dataset caches (support/three_datasets.py)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import soundfile as sf

from audioret.pipeline.audiocaps import clip_stem
from support import AUDIO, DATA

# AudioCaps (pipeline/audiocaps.py): CSVs per split + audio/<split>/<ytid>_<start>.wav
SOURCES = sorted((AUDIO / "fsdd_ccbysa").glob("*.wav"))
# split → [(audiocap_id, youtube_id, start_time, caption)]; val rows deliberately out of audiocap_id order.
ROWS = {
    "train": [(11, "aaaaaaaaaaa", "30", "a dog barks"), (12, "bbbbbbbbbbb", "0", "rain falls on a roof")],
    "val": [(25, "ccccccccccc", "10", "five"), (21, "ccccccccccc", "10", "one"), (23, "ccccccccccc", "10", "three"),
            (22, "ccccccccccc", "10", "two"), (24, "ccccccccccc", "10", "four")],
    "test": [(31, "ddddddddddd", "60", "a man speaks"), (32, "eeeeeeeeeee", "20", "gone from youtube")],
}
MISSING = {("test", "eeeeeeeeeee_20")}


def write_audiocaps_csv(path: Path, rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        w.writerows(rows)


def make_audiocaps(root: Path, csv_dir: Path, audio_dir: Path, ext: str = "wav", start_suffix: str = "",
                   rows_by_split: dict = ROWS, missing: set = MISSING, sources: list[Path] = SOURCES) -> Path:
    """Write the CSVs (start times optionally as "30.0") and real audio for every clip not in `missing`: the
    `sources` in turn, split by split, clips of a split in sorted order (support/three_datasets.py passes its
    own)."""
    i = 0
    for split, rows in rows_by_split.items():
        write_audiocaps_csv(csv_dir / f"{split}.csv", [(a, y, s + start_suffix, c) for a, y, s, c in rows])
        for stem in sorted({clip_stem(y, s) for _, y, s, _ in rows}):
            if (split, stem) in missing:
                continue
            data, sr = sf.read(sources[i % len(sources)])
            i += 1
            (audio_dir / split).mkdir(parents=True, exist_ok=True)
            sf.write(audio_dir / split / f"{stem}.{ext}", data, sr)
    return root


# WavCaps (pipeline/wavcaps.py): json_files/<Source>/<x>_final.json + Audio/<Source>/
FLAC = sorted((AUDIO / "sonic_pi_cc0").glob("*.flac"))
WAV = sorted((AUDIO / "fsdd_ccbysa").glob("*.wav"))
# Source folder → [(id as in the metadata, caption, audio to copy or None = missing, extension on disk)].
TREE = {
    "FreeSound": [(180, "a kick drum hits once", FLAC[0], ".flac"),
                  ("2219", "a snare is struck hard", FLAC[1], ".flac"),
                  (99999, "this file never arrived", None, ".flac")],
    "BBC_Sound_Effects": [("07070190", "an electronic beep", FLAC[2], ".flac"),
                          ("07070191", "a man says a digit", WAV[0], ".wav")],  # a re-encoded copy is found too
    "SoundBible": [("2219", "a crow caws", FLAC[4], ".flac")],  # same number as a FreeSound id
    "AudioSet_SL": [("Yabc-DEF_123_30.000.wav", "drums play a break", FLAC[3], ".flac")],
}
FILES = {"FreeSound": "fsd_final.json", "BBC_Sound_Effects": "bbc_final.json", "SoundBible": "sb_final.json",
         "AudioSet_SL": "as_final.json"}


def make_wavcaps(base: Path, bare_list: bool = False, tree: dict = TREE) -> Path:
    """json_files/<Source>/<x>_final.json and Audio/<Source>/<stem><ext> under `base` (the WavCaps folder)."""
    for source, rows in tree.items():
        entries = [{"id": i, "caption": c, "duration": 1.0, "download_link": f"https://example.invalid/{i}"}
                   for i, c, _, _ in rows]
        meta = base / "json_files" / source / FILES[source]
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(entries if bare_list else {"num_captions_per_audio": 1, "data": entries}))
        (base / "Audio" / source).mkdir(parents=True, exist_ok=True)
        for i, _, src, ext in rows:
            if src is not None:
                shutil.copyfile(src, base / "Audio" / source / (str(i).removesuffix(".wav") + ext))
    return base


# Clotho v2.1 (pipeline/datasets.py): clotho_captions_<split>.csv + <split>/<file>
CLOTHO_CAPTIONS = DATA / "captions" / "clotho_style.csv"


def make_clotho(root: Path, missing_audio: tuple[str, ...] = ()) -> Path:
    """Clotho v2.1 layout from the fixture captions; each clip's audio is a copy of a real bundled MP3."""
    clip = AUDIO / "animals_cc0" / "dog.mp3"
    rows: dict[str, list[dict]] = {}
    with open(CLOTHO_CAPTIONS, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row.pop("split"), []).append(row)
    for split, items in rows.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        with open(root / f"clotho_captions_{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(items[0]))
            w.writeheader()
            w.writerows(items)
        for item in items:
            if item["file_name"] not in missing_audio:
                shutil.copyfile(clip, root / split / item["file_name"])
    return root

"""The same recording in two caches of one run: found by the id its source gives it, kept out of its negatives.

Why: AudioCaps and WavCaps' AudioSet_SL part both hold AudioSet clips (WavCaps captioned AudioSet's strongly
labelled subset), so a run on both (`train --extra`) has clips that are in two caches under two clip ids. To the
trainer they were two clips, and one could be the other's negative in a batch. `find_duplicates` maps every
training clip to one identity (the global position of its first copy, in the run's cache order); the loss masks
captions of one identity out of each other's negatives (trainer/loss.py), as it does for one clip's captions.

What the caches record, and the trainer reads nothing else: each audio manifest's `dataset` (the reader that
made it) and its clip ids, which the readers in pipeline/ build from the source's own ids:
- audiocaps (pipeline/audiocaps.py): `{youtube_id}_{start}.{ext}`, the YouTube id 11 characters;
- wavcaps (pipeline/wavcaps.py): `<Source>/<id>.{ext}`; AudioSet_SL ids are AudioSet file names, `Y{youtube_id}`
  (a `_{start}` suffix allowed), FreeSound, BBC_Sound_Effects and SoundBible ids their sites' numbers;
- clotho: file names, unique in Clotho (two Clotho caches of one run share them). The Freesound id of a Clotho
  clip is only in clotho_metadata_*.csv, which no cache keeps, so Clotho ∩ WavCaps-FreeSound is not found
  here: `prep audio --exclude` with the DCASE list of overlapping Freesound ids is the tool for that;
- manifest and folder caches: no id but the user's own path, which says nothing across caches: never matched.
A clip whose id does not have its reader's form (say, AudioCaps audio renamed) gets no source id: never merged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Sequence

import numpy as np

_YOUTUBE = r"[A-Za-z0-9_-]{11}"
_START = r"(?:_\d+(?:\.\d+)?)"
AUDIOCAPS_STEM = re.compile(rf"({_YOUTUBE}){_START}")
AUDIOSET_STEM = re.compile(rf"Y({_YOUTUBE}){_START}*")
WAVCAPS_SITES = {"FreeSound": "freesound", "BBC_Sound_Effects": "bbc", "SoundBible": "soundbible"}


def source_id(dataset: str, clip_id: str) -> str | None:
    """`"youtube:<id>"`, `"freesound:<id>"`, ... for a clip of a `dataset`-kind cache, or None when its id says
    nothing beyond the cache (see the module docstring)."""
    path = PurePosixPath(clip_id)
    if dataset == "clotho":
        return f"clotho:{clip_id}"
    if dataset == "audiocaps":
        m = AUDIOCAPS_STEM.fullmatch(path.stem)
        return f"youtube:{m.group(1)}" if m else None
    if dataset == "wavcaps" and len(path.parts) == 2:
        folder, stem = path.parts[0], path.stem
        if folder == "AudioSet_SL":
            m = AUDIOSET_STEM.fullmatch(stem)
            return f"youtube:{m.group(1)}" if m else None
        if folder in WAVCAPS_SITES and stem:
            return f"{WAVCAPS_SITES[folder]}:{stem}"
    return None


@dataclass
class Duplicates:
    """Clips of a run that are one recording: `identity[p]` is the global position of clip p's first copy (p
    itself for most clips); `pairs` lists (later copy, first copy) as (dataset name, clip id) each."""

    identity: np.ndarray
    pairs: list[tuple[tuple[str, str], tuple[str, str]]] = field(default_factory=list)

    def report(self, examples: int = 3) -> dict[str, Any] | None:
        """What run.json keeps (None when there are none): the count, per "later ~ earlier" dataset pair, and a
        few (later clip id, earlier clip id) examples."""
        if not self.pairs:
            return None
        by_datasets: dict[str, int] = {}
        for (later, _), (first, _) in self.pairs:
            by_datasets[f"{later} ~ {first}"] = by_datasets.get(f"{later} ~ {first}", 0) + 1
        return {"count": len(self.pairs), "by_datasets": by_datasets,
                "examples": [[later[1], first[1]] for later, first in self.pairs[:examples]]}


def find_duplicates(sources: Sequence[Any], offsets: Sequence[int], positions: np.ndarray) -> Duplicates:
    """Duplicates across the caches of `sources` (trainer/sources.py Source: name, audio cache with its manifest's
    `dataset` and `clip_ids`) among the clips at global `positions` (the training clips); cache i starts at global
    position `offsets[i]`. Within one cache, clips stay apart (the reader made them distinct); a clip matches the
    first copy in an earlier cache of the run."""
    identity = np.arange(int(offsets[-1]), dtype=np.int64)
    first: dict[str, tuple[int, str, str]] = {}
    pairs: list[tuple[tuple[str, str], tuple[str, str]]] = []
    positions = np.sort(np.asarray(positions, dtype=np.int64))
    for i, src in enumerate(sources):
        dataset, ids = src.audio.manifest.dataset, src.audio.clip_ids
        mine: dict[str, tuple[int, str, str]] = {}
        for p in positions[(positions >= offsets[i]) & (positions < offsets[i + 1])].tolist():
            clip = ids[p - int(offsets[i])]
            sid = source_id(dataset, clip)
            if sid is None:
                continue
            if sid in first:
                identity[p] = first[sid][0]
                pairs.append(((src.name, clip), first[sid][1:]))
            else:
                mine.setdefault(sid, (p, src.name, clip))
        for sid, entry in mine.items():
            first.setdefault(sid, entry)
    return Duplicates(identity, pairs)

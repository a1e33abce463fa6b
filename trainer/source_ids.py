"""One recording in two caches of a run (AudioCaps and WavCaps' AudioSet_SL), found by its source id.

Why: such a clip was two clips to the trainer, so one copy could be the other's negative. `source_id` reads what
the caches record (the manifest's dataset kind and the clip ids pipeline/audiocaps.py and pipeline/wavcaps.py
make) into an id; `find_duplicates` gives every copy the identity of its first, which the loss's same-clip mask
uses. Which kinds carry which ids, and what is not found: docs/training.md.
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

    def summary(self) -> str:
        """The stderr line: how many training clips are a recording another cache of the run holds too."""
        pairs = ", ".join(f"{k} ({n})" for k, n in (self.report() or {}).get("by_datasets", {}).items())
        return (f"{len(self.pairs)} training clip(s) are one recording in two caches, by source id: {pairs}; each "
                "pair is one clip to the loss (not each other's negatives)")

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

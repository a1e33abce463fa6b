"""Training on several caches in one run (the DCASE 2025 recipe: Clotho + AudioCaps + WavCaps).

Why one global clip index (`ConcatAudio`): the batch rules compare clip positions, and putting the caches end to
end keeps positions of different caches apart, so the epoch plan, resident tensors, streamed shards and per-rank
slices work on the combined reader unchanged. Why per-dataset weights are drawn from (seed, epoch): like the rest
of the epoch plan, a resumed run then replays the same epochs bit for bit. docs/training.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from audioret.cache.audio_shards import stack_clips


@dataclass
class Source:
    """One dataset of a run: its audio and caption caches, the split it trains on and its weight per epoch."""

    name: str
    audio: Any  # cache.audio_shards.AudioCache
    captions: Any  # cache.caption_shards.CaptionCache
    split: str
    weight: float = 1.0

    def record(self) -> dict[str, Any]:
        """What RUN_DIR/run.json keeps of an extra dataset, so a resume re-opens exactly these caches."""
        return {"name": self.name, "audio_key": self.audio.key, "caption_key": self.captions.key,
                "split": self.split, "weight": self.weight, "audio_dir": str(self.audio.directory),
                "caption_dir": str(self.captions.directory)}


class ConcatAudio:
    """Several audio caches read as one, with the `AudioCache` reader interface the trainer's data code uses
    (`len`, `lengths()`, `get(i)`, `load_all(indices)`, `verify()`, `n_mels`, `config`, `key`, `directory`)."""

    def __init__(self, caches: Sequence[Any]) -> None:
        self.caches = list(caches)
        sizes = [len(c) for c in self.caches]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # global position of each first clip
        self._cache_of = np.repeat(np.arange(len(sizes)), sizes)
        self._lengths = np.concatenate([c.lengths() for c in self.caches])
        main = self.caches[0]  # the main cache speaks for the whole in messages; all share one feature definition
        self.directory, self.config, self.n_mels = main.directory, main.config, main.n_mels
        self.key = "+".join(c.key for c in self.caches)  # names the combination (trainer/data.py load_resident)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def lengths(self) -> np.ndarray:
        return self._lengths

    def locate(self, position: int) -> tuple[int, int]:
        """(cache number, position inside that cache) of a global clip position."""
        i = int(self._cache_of[position])
        return i, int(position) - int(self.offsets[i])

    def get(self, position: int) -> np.ndarray:
        i, p = self.locate(position)
        return self.caches[i].get(p)

    def load_all(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        idx = np.asarray(indices, dtype=np.int64)
        ids = [self.caches[i].clip_ids[p] for i, p in map(self.locate, idx)]
        return (*stack_clips(self, idx), ids)

    def verify(self) -> None:
        for c in self.caches:
            c.verify()


def weighted_count(n: int, weight: float) -> int:
    """Captions a dataset of n training captions gives an epoch: w·n rounded, halves up."""
    return int(math.floor(weight * n + 0.5))


def epoch_rows(source_of_row: np.ndarray, weights: Sequence[float], seed: int, epoch: int) -> np.ndarray:
    """Caption-table rows of one epoch, in table order (the plan shuffles them).

    Every row once when all weights are 1 (then no random number is drawn, so a one-cache run plans exactly as
    before weights existed). Otherwise dataset i gives weighted_count(n_i, w_i) rows: whole passes over its rows,
    then a subset without replacement drawn from (seed, epoch, i).
    """
    if all(w == 1 for w in weights):
        return np.arange(len(source_of_row), dtype=np.int64)
    parts = []
    for i, w in enumerate(weights):
        rows = np.flatnonzero(source_of_row == i)
        passes, rest = divmod(weighted_count(len(rows), w), max(1, len(rows)))
        parts += [rows] * passes
        if rest:
            rng = np.random.default_rng([seed, epoch, i, 0x3E16])
            parts.append(np.sort(rng.choice(rows, rest, replace=False)))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def epoch_size(source_of_row: np.ndarray, weights: Sequence[float]) -> int:
    """Rows per epoch (the same every epoch): what the lr schedule counts steps by."""
    counts = np.bincount(source_of_row, minlength=len(weights))
    return sum(weighted_count(int(n), w) for n, w in zip(counts, weights))

"""Training batches from the shard caches: which captions go together, crops, padding, text augmentation.

Why the epoch plan is computed up front from (seed, epoch): the batch composition (every caption once, never two
captions of one clip in a batch), the crops and the text-augmentation seeds are then the same whether features are
streamed from memmaps by DataLoader workers or resident in RAM / on the GPU, and a resumed run replays exactly the
epochs an uninterrupted run would have seen. Several caches feed one plan through trainer/sources.py.
"""
from __future__ import annotations

import dataclasses
import random
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from audioret.cache.feature_contract import FLOOR_DB, FeatureScale
from audioret.trainer.caption_text import caption_view
from audioret.trainer.config import ConfigError, TrainConfig
from audioret.trainer.encoders import feature_spec
from audioret.trainer.source_ids import find_duplicates
from audioret.trainer.sources import (
    ConcatAudio,
    DataError,
    Source,
    check_sources,
    epoch_rows,
    epoch_size,
    weight_problem,
    weighted_count,
)


@dataclass
class CaptionTable:
    """The captions of one split aligned with the audio cache: row r is caption `caption_index[r]` of clip
    `clip_ids[r]`, whose features are audio-cache index `clip_pos[r]` (of the combined reader when several
    caches feed a run: then `source[r]` says which dataset the row comes from)."""

    clip_pos: np.ndarray
    clip_ids: list[str]
    caption_index: np.ndarray
    texts: list[str]
    source: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)


def caption_table(audio, captions, split: str) -> CaptionTable:
    """Join the caption cache with the audio cache for one split; captions whose clip has no audio are dropped
    with a warning (a clip that failed to decode at prep time). Column-wise (numpy over caption rows, one
    audio look-up per clip): the join of 465k captions took a Python loop of seconds."""
    clip, index, texts = captions.caption_rows(split)
    pos = audio.positions(captions.clip_ids)[clip] if len(clip) else np.zeros(0, dtype=np.int64)
    has_audio = pos >= 0
    if not has_audio.all():
        missing = sorted(captions.clip_ids[c] for c in np.unique(clip[~has_audio]).tolist())
        warnings.warn(f"split {split!r}: {len(missing)} clip(s) with captions but no audio features are skipped "
                      f"(e.g. {missing[0]!r})", stacklevel=2)
    keep = np.flatnonzero(has_audio)
    if not len(keep):
        raise DataError(f"split {split!r}: no captions with audio features")
    ids = captions.clip_ids
    return CaptionTable(pos[keep], [ids[c] for c in clip[keep].tolist()], index[keep],
                        [texts[r] for r in keep.tolist()])


def join_tables(tables: Sequence[CaptionTable], offsets: Sequence[int]) -> CaptionTable:
    """One table over several datasets: clip positions shifted by each cache's global offset, source per row."""
    return CaptionTable(np.concatenate([t.clip_pos + int(o) for t, o in zip(tables, offsets, strict=False)]),
                        [c for t in tables for c in t.clip_ids],
                        np.concatenate([t.caption_index for t in tables]), [x for t in tables for x in t.texts],
                        np.concatenate([np.full(len(t), i, dtype=np.int64) for i, t in enumerate(tables)]))


def plan_batches(clip_of_row: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle the rows, then fill batches greedily, deferring a row whose clip is already in the batch.

    Every row lands in exactly one batch and no batch holds two rows of one clip. Deferred rows go first into the
    next batch, so they wait at most a batch or two; only the very end of an epoch can leave small batches when
    the remaining rows share few clips.
    """
    order = rng.permutation(len(clip_of_row))
    batches: list[np.ndarray] = []
    deferred: list[int] = []
    pos = 0
    while pos < len(order) or deferred:
        batch: list[int] = []
        clips: set[int] = set()
        still: list[int] = []
        for r in deferred:
            c = int(clip_of_row[r])
            if len(batch) < batch_size and c not in clips:
                batch.append(r), clips.add(c)
            else:
                still.append(r)
        while len(batch) < batch_size and pos < len(order):
            r = int(order[pos])
            pos += 1
            c = int(clip_of_row[r])
            if c in clips:
                still.append(r)
            else:
                batch.append(r), clips.add(c)
        deferred = still
        batches.append(np.asarray(batch, dtype=np.int64))
    return batches


def crop_windows(lengths: np.ndarray, crop: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) per clip: a uniform random `crop`-frame window of longer clips, whole shorter clips."""
    lengths = np.asarray(lengths, dtype=np.int64)
    room = np.maximum(lengths - crop, 0)
    starts = np.floor(rng.random(len(lengths)) * (room + 1)).astype(np.int64)
    return np.minimum(starts, room), np.minimum(lengths, crop)


def pad_arrays(arrays: list[np.ndarray], n_mels: int = 64, dtype: np.dtype | type = np.float32,
               floor: float = FLOOR_DB) -> tuple[np.ndarray, np.ndarray]:
    """Stack (T_i, n_mels) arrays into (B, max T, n_mels) `dtype` padded with the feature's silence value (the
    −100 dB floor of the PANNs log-mel by default), plus lengths."""
    lengths = np.asarray([a.shape[0] for a in arrays], dtype=np.int64)
    out = np.full((len(arrays), max(1, int(lengths.max(initial=1))), n_mels), floor, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, :a.shape[0]] = a
    return out, lengths


def example_seed(seed: int, epoch: int, batch: int) -> int:
    """A seed per (run seed, epoch, batch) for text augmentation: independent of worker count and order."""
    return int(np.random.SeedSequence([seed, epoch, batch, 0x7E47]).generate_state(1, dtype=np.uint64)[0])


@dataclass
class Batch:
    x: torch.Tensor  # (B, T, n_mels) float32 dB, floor-padded
    lengths: torch.Tensor  # (B,) long
    clip_pos: torch.Tensor  # (B,) long, audio-cache index
    texts: list[str]
    same_clip: torch.Tensor | None = None  # (B,) long for the same-clip mask, None: clip_pos (trainer/source_ids.py)


@dataclass
class EpochPlan:
    """One epoch. An entry is one training example: caption-table row `rows[e]` (every row once, or by the
    datasets' weights, trainer/sources.py); batches, crops and sizes index entries."""

    batches: list[np.ndarray]  # entries per batch
    starts: np.ndarray  # crop start per entry
    sizes: np.ndarray  # crop length per entry
    seeds: list[int]  # text-augmentation seed per batch
    rows: np.ndarray  # caption-table row per entry


class TextSide:
    """Picks the training text of each row: back-translation substitution (p_bt) then EDA, seeded per batch.
    One augmenter per dataset (back-translations live in its own caption cache), or None: the captions as they are."""

    def __init__(self, table: CaptionTable, augmenters: Sequence | None) -> None:
        self.table, self.augmenters = table, augmenters
        # dataset of each row, once: a table of one cache carries no `source` (all rows are dataset 0)
        self.source = table.source if table.source is not None else np.zeros(len(table), np.int64)

    def texts(self, rows: np.ndarray, seed: int) -> list[str]:
        if self.augmenters is None:
            return [self.table.texts[r] for r in rows]
        rng = random.Random(seed)
        return [self.augmenters[self.source[r]].pick(self.table.clip_ids[r], int(self.table.caption_index[r]), rng)
                for r in rows]


def build_text_side(table: CaptionTable, caption_caches: Sequence, cfg: TrainConfig) -> TextSide:
    """A TextAugmenter per caption cache (one EDA, its vocabulary every training caption); p_bt is treated as 0
    (with a warning naming the cache) for a cache without back-translations."""
    if cfg.p_bt <= 0 and cfg.p_eda <= 0:
        return TextSide(table, None)
    from audioret.trainer.eda import EDA, TextAugmenter, vocabulary_of

    eda = None
    if cfg.p_eda > 0:
        eda = EDA(vocabulary_of(table.texts), cfg.p_eda, cfg.p_syn, cfg.p_swp, cfg.p_del, cfg.p_ins, seed=cfg.seed)
    augmenters = []
    for captions in caption_caches:
        p_bt = cfg.p_bt
        if p_bt > 0 and (captions.backend == "none" or not captions.pivots):
            warnings.warn(f"caption cache {captions.directory} has no back-translations (translator "
                          f"{captions.backend!r}): p_bt={p_bt} is treated as 0", stacklevel=2)
            p_bt = 0.0
        augmenters.append(TextAugmenter(captions, p_bt, eda))
    return TextSide(table, augmenters)


_RESIDENT_MEMO: dict[tuple[str, str, bytes], tuple[np.ndarray, np.ndarray]] = {}


def load_resident(audio, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`audio.load_all(indices)`, remembered for the next run in this process (one entry: the latest).

    Why: search/sweep workers run trial after trial on the same cache and split; re-reading every shard per
    trial is the bulk of a trial's start-up on large caches. A complete cache dir is immutable (its name is
    its content key), so (dir, key, indices) identifies the array; the array is only ever read (gathers copy).
    """
    idx = np.asarray(indices, dtype=np.int64)
    memo_key = (str(audio.directory), str(audio.key), idx.tobytes())
    if memo_key not in _RESIDENT_MEMO:
        _RESIDENT_MEMO.clear()  # hold one split's features at most, never a growing set
        feats, offsets, _ = audio.load_all(idx)
        _RESIDENT_MEMO[memo_key] = (feats, offsets)
    return _RESIDENT_MEMO[memo_key]


class ResidentAudio:
    """The features of some clips as one float16 tensor (RAM or GPU); batches gathered by index where it lives."""

    def __init__(self, audio, indices: np.ndarray, device: torch.device, floor: float = FLOOR_DB) -> None:
        feats, offsets = load_resident(audio, indices)
        self.device, self.floor = device, floor
        self.features = torch.from_numpy(feats).to(device)
        self.offsets = torch.from_numpy(offsets[:-1].copy()).to(device)
        self.row_of = np.full(len(audio), -1, dtype=np.int64)
        self.row_of[np.asarray(indices, dtype=np.int64)] = np.arange(len(indices))

    def gather(self, clip_pos: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.from_numpy(self.row_of[clip_pos]).to(self.device)
        start = torch.from_numpy(starts).to(self.device)
        size = torch.from_numpy(sizes).to(self.device)
        t = torch.arange(int(sizes.max()), device=self.device)
        valid = t.unsqueeze(0) < size.unsqueeze(1)
        index = torch.where(valid, self.offsets[rows].unsqueeze(1) + start.unsqueeze(1) + t, 0)
        x = self.features[index].float()
        return x.masked_fill_(~valid.unsqueeze(-1), self.floor), size


class StreamedBatches(torch.utils.data.Dataset):
    """One item = one whole planned batch, read from the memmapped shards (in a DataLoader worker).

    The batch stays float16 as stored (exact, the floor included) and becomes float32 on the training device:
    half the bytes through the workers' shared memory and the host-to-GPU copy, and no float16 → float32
    conversion in the workers (measured with benchmarks/scale_stream.py: it was most of a worker's time)."""

    def __init__(self, audio, table: CaptionTable, text: TextSide, plan: EpochPlan, floor: float = FLOOR_DB) -> None:
        self.audio, self.table, self.text, self.plan, self.floor = audio, table, text, plan, floor

    def __len__(self) -> int:
        return len(self.plan.batches)

    def __getitem__(self, k: int) -> dict:
        entries = self.plan.batches[k]
        rows = self.plan.rows[entries]
        arrays = [self.audio.get(int(self.table.clip_pos[r]))[s:s + n]
                  for r, s, n in zip(rows, self.plan.starts[entries], self.plan.sizes[entries], strict=False)]
        x, lengths = pad_arrays(arrays, self.audio.n_mels, np.float16, self.floor)
        return {"x": torch.from_numpy(x), "lengths": torch.from_numpy(lengths),
                "clip_pos": torch.from_numpy(self.table.clip_pos[rows]),
                "texts": self.text.texts(rows, self.plan.seeds[k])}


def choose_mode(cfg: TrainConfig, audio, indices: np.ndarray, device: torch.device) -> str:
    """"auto" → resident ("gpu" on CUDA, else "ram") when the split's float16 features fit the memory budget."""
    if cfg.resident != "auto":
        if cfg.resident == "gpu" and device.type != "cuda":
            raise DataError("resident=gpu needs a CUDA device")
        return cfg.resident
    nbytes = int(audio.lengths()[indices].sum()) * audio.n_mels * 2
    if nbytes > cfg.memory_budget_gb * 2**30:
        return "stream"
    return "gpu" if device.type == "cuda" else "ram"


def source_table(source: Source) -> CaptionTable:
    """caption_table of one dataset, its errors naming the cache."""
    try:
        return caption_table(source.audio, source.captions, source.split)
    except DataError as exc:
        raise DataError(f"{source.captions.directory}: {exc}") from None


class TrainData:
    """Batches for training epochs in one of the modes "ram", "gpu" (resident) or "stream" (memmap + workers).

    `extras`: more datasets whose training captions join the main one's in every epoch (trainer/sources.py);
    `match_sources`: one recording in two of them is one clip to the loss (trainer/source_ids.py)."""

    def __init__(self, audio, captions, split: str, cfg: TrainConfig, device: torch.device,
                 extras: Sequence[Source] = (), match_sources: bool = True) -> None:
        def view(c):  # the form of each caption the model sees
            return caption_view(c, cfg.text_normalisation)

        self.sources = [Source(audio.manifest.name, audio, view(captions), split),
                        *(dataclasses.replace(e, captions=view(e.captions)) for e in extras)]
        self.fps = check_sources(self.sources, cfg.audio_encoder)
        self.scale: FeatureScale = feature_spec(cfg.audio_encoder).scale  # padding value and gain per dB
        self.audio = ConcatAudio([s.audio for s in self.sources]) if extras else audio
        self.cfg, self.device = cfg, device
        self.table = join_tables([source_table(s) for s in self.sources],
                                 self.audio.offsets if extras else [0])
        self.weights = [s.weight for s in self.sources]
        for i, s in enumerate(self.sources):  # before any epoch is planned: a huge weight would exhaust memory
            problem = weight_problem(s, int(np.count_nonzero(self.table.source == i)))
            if problem:
                raise ConfigError(problem)
        self.text = build_text_side(self.table, [s.captions for s in self.sources], cfg)
        self.crop = max(1, int(round(cfg.max_seconds * self.fps)))
        self.clip_indices = np.unique(self.table.clip_pos)
        if len(self.clip_indices) < 2:  # a batch of one clip has no negative: the contrastive loss learns nothing
            raise DataError(f"{audio.directory}: split {split!r} has {len(self.clip_indices)} clip(s) with captions "
                            "and audio; training needs at least 2 (check the split's CSV and failures.jsonl)")
        # one identity per recording for the loss's same-clip mask; None (clip positions) when no cache shares one
        self.duplicates = (find_duplicates(self.sources, self.audio.offsets, self.clip_indices)
                           if extras and match_sources else None)
        self.same_clip = self.duplicates.identity if self.duplicates and self.duplicates.pairs else None
        self.mode = choose_mode(cfg, self.audio, self.clip_indices, device)
        if self.mode == "stream":
            self.audio.verify()  # here, before DataLoader workers fork: they inherit the result (cache/integrity.py)
        self.resident = (ResidentAudio(self.audio, self.clip_indices, device if self.mode == "gpu" else
                                       torch.device("cpu"), self.scale.floor) if self.mode in ("ram", "gpu") else None)

    def describe(self) -> str:
        """What each dataset gives the run, e.g. "4000 captions of 800 clips (clotho development) + ..."."""
        parts = []
        for i, s in enumerate(self.sources):
            mine = self.table.source == i
            n = int(mine.sum())
            per_epoch = "" if s.weight == 1 else f", weight {s.weight:g}: {weighted_count(n, s.weight)} per epoch"
            parts.append(f"{n} captions of {len(np.unique(self.table.clip_pos[mine]))} clips "
                         f"({s.name} {s.split}{per_epoch})")
        return " + ".join(parts)

    def _same_clip(self, clip_pos: np.ndarray) -> torch.Tensor | None:
        return None if self.same_clip is None else torch.from_numpy(self.same_clip[clip_pos]).to(self.device)

    def plan(self, epoch: int) -> EpochPlan:
        rng = np.random.default_rng([self.cfg.seed, epoch, 0xDA7A])
        rows = epoch_rows(self.table.source, self.weights, self.cfg.seed, epoch)
        clip_pos = self.table.clip_pos[rows]
        batches = plan_batches(clip_pos, self.cfg.batch_size, rng)
        starts, sizes = crop_windows(self.audio.lengths()[clip_pos], self.crop, rng)
        seeds = [example_seed(self.cfg.seed, epoch, k) for k in range(len(batches))]
        return EpochPlan(batches, starts, sizes, seeds, rows)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch (epoch numbers start at 1), features already on the training device."""
        plan = self.plan(epoch)
        if self.resident is not None:
            for k, entries in enumerate(plan.batches):
                rows = plan.rows[entries]
                clip_pos = self.table.clip_pos[rows]
                x, lengths = self.resident.gather(clip_pos, plan.starts[entries], plan.sizes[entries])
                yield Batch(x.to(self.device, non_blocking=True), lengths.to(self.device),
                            torch.from_numpy(clip_pos).to(self.device), self.text.texts(rows, plan.seeds[k]),
                            self._same_clip(clip_pos))
            return
        workers = self.cfg.num_workers
        loader = torch.utils.data.DataLoader(
            StreamedBatches(self.audio, self.table, self.text, plan, self.scale.floor), batch_size=None, shuffle=False,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers > 0 else None, multiprocessing_context="fork" if workers > 0 else None,
            generator=torch.Generator().manual_seed(epoch))  # not the global RNG: stream ≡ resident, bit for bit
        for item in loader:
            yield Batch(item["x"].to(self.device, non_blocking=True).float(), item["lengths"].to(self.device),
                        item["clip_pos"].to(self.device), item["texts"], self._same_clip(item["clip_pos"].numpy()))

    def nominal_steps(self) -> int:
        """Optimiser steps in an epoch as the lr schedule lays them out: every caption once at the global batch
        size, this rank's share under DDP (an epoch's plan may hold a batch more where clips collide)."""
        return -(-epoch_size(self.table.source, self.weights) // max(1, self.cfg.batch_size))

    def n_batches(self, epoch: int) -> int:
        return len(self.plan(epoch).batches)

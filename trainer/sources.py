"""The caches a run reads: opening them, refusing those whose features do not fit the encoder, and several caches
in one run (Clotho + AudioCaps + WavCaps, the DCASE 2025 recipe).

Why one global clip index (`ConcatAudio`): the batch rules compare clip positions, and putting the caches end to
end keeps positions of different caches apart, so the epoch plan, resident tensors, streamed shards and per-rank
slices work on the combined reader unchanged. Why per-dataset weights are drawn from (seed, epoch): like the rest
of the epoch plan, a resumed run replays the same epochs bit for bit. docs/training.md.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from audioret.cache.audio_shards import stack_clips
from audioret.cache.feature_contract import LEGACY_FEATURE
from audioret.trainer.checkpoint import RUN_INFO
from audioret.trainer.config import ConfigError, TrainConfig, parse_extra, resolve_split
from audioret.trainer.encoders import feature_spec


class DataError(ValueError):
    """The caches cannot feed this model (wrong features, no captions for a split, ...)."""


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


#: The largest weight an extra dataset may have: at most 100 passes over its captions per epoch. The epoch plan
#: holds every one of its captions (8 bytes each and more), so `--extra ac:1e9` was an out-of-memory kill.
MAX_WEIGHT = 100.0


def weighted_count(n: int, weight: float) -> int:
    """Captions a dataset of n training captions gives an epoch: w·n rounded, halves up."""
    return int(math.floor(weight * n + 0.5))


def weight_problem(source: "Source", n: int) -> str | None:
    """Why `source`'s weight cannot be planned (above MAX_WEIGHT), naming the epoch it would give; None if fine."""
    if source.weight <= MAX_WEIGHT:
        return None
    return (f"config key 'extra': {source.name}:{source.weight:g} would put {weighted_count(n, source.weight):,} "
            f"captions of {source.name} into every epoch ({source.weight:g} × its {n:,} training captions); a weight "
            f"is at most {MAX_WEIGHT:g} (here {weighted_count(n, MAX_WEIGHT):,} captions per epoch)")


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
    return sum(weighted_count(int(n), w) for n, w in zip(counts, weights, strict=False))


def cache_feature(config: dict) -> str:
    """The feature definition a cache holds, as "name (version)" where a version is recorded."""
    name = str(config.get("feature", LEGACY_FEATURE))
    return f"{name} ({config['feature_version']})" if config.get("feature_version") else name


def feature_fits(config: dict, encoder: str = "cnn10") -> bool:
    """Whether a cache's recorded feature definition is the one `encoder` needs (numbers checked separately)."""
    return feature_mismatch(config, encoder) is None


def feature_mismatch(config: dict, encoder: str = "cnn10") -> str | None:
    """None when a cache holds the features `encoder` needs, else what differs (the middle of the error line).

    By name for panns / passt; for an `hf:` encoder by the extractor's class and resolved settings as the cache
    records them, so a cache prepped with another spelling of the same folder ("clap", "/abs/clap/") fits and a
    folder of the same name whose extractor computes something else does not."""
    need = feature_spec(encoder)
    got = str(config.get("feature", LEGACY_FEATURE))
    kind = need.extractor["extractor_class"] if need.extractor else None
    if kind is None or not got.startswith("hf:") or config.get("extractor_class") != kind:
        return None if got == need.feature else \
            f"holds {cache_feature(config)} features, the {encoder} encoder needs {need.feature}"
    theirs, ours = config.get("extractor_settings") or {}, need.extractor["extractor_settings"]
    differ = [f"{k} {theirs.get(k)!r} ≠ {ours.get(k)!r}" for k in sorted(set(theirs) | set(ours))
              if theirs.get(k) != ours.get(k)]
    if not differ:
        return None
    return (f"holds {got} features of other {kind} settings than the {encoder} encoder's (cache ≠ encoder): "
            f"{', '.join(differ)}")


def check_audio_config(config: dict, source: str, encoder: str = "cnn10") -> float:
    """Refuse a cache whose features differ from what `encoder` is built for; returns frames per second.

    First the recorded feature definition (a PaSST mel cache has a plausible shape but other numbers), then the
    numbers the encoder's shapes depend on."""
    need = feature_spec(encoder)
    mismatch = feature_mismatch(config, encoder)
    if mismatch is not None:
        raise DataError(f"{source}: audio cache {mismatch} (re-run `audioret prep audio {need.prep}`)")
    for key, value in need.numbers().items():
        got = config.get(key)
        if got is None or int(got) != value:
            raise DataError(f"{source}: audio cache has {key}={got!r}, the model needs {key}={value} "
                            f"(re-run `audioret prep audio {need.prep}`)")
    return float(config["sample_rate"]) / float(config["hop_length"])


def check_sources(sources: Sequence[Source], encoder: str = "cnn10") -> float:
    """Every cache of a run must hold the features `encoder` needs; returns frames per second. One frame rate
    for all follows (crops are counted in frames): check_audio_config pins each cache's sample_rate and
    hop_length to the encoder's."""
    return [check_audio_config(s.audio.config, str(s.audio.directory), encoder) for s in sources][0]


def open_audio_cache(cache_root: Path, name: str, audio_key: str | None = None, encoder: str = "cnn10"):
    """The audio cache to train on: by key, or the newest complete one named `name` whose features fit `encoder`
    (caches of several feature definitions can share a name, e.g. `prep audio --features passt` beside the
    default). When none fits, check_audio_config refuses the newest one, naming both definitions."""
    from audioret.cache.audio_shards import AudioCache
    from audioret.cache.manifest import CacheNotFoundError, resolve_manifest

    def trainable(m) -> bool:  # a `folder` cache (predict / retrieve --audio-dir: no captions) never is
        return feature_fits(m.config, encoder) and m.dataset != "folder"

    audio = AudioCache.open(cache_root, name=None if audio_key else name, key=audio_key)
    if not audio_key and not trainable(audio.manifest):
        try:
            directory, manifest = resolve_manifest(cache_root, "audio", name=name, where=trainable)
            audio = AudioCache(directory, manifest=manifest)
        except CacheNotFoundError:
            pass
    check_audio_config(audio.config, str(audio.directory), encoder)
    return audio


def open_caches(cache_root: Path, name: str, audio_key: str | None, caption_key: str | None,
                encoder: str = "cnn10"):
    """(audio cache, caption cache) of one dataset: by key, or the newest of `name` (audio: whose features fit)."""
    from audioret.cache.caption_shards import CaptionCache

    audio = open_audio_cache(cache_root, name, audio_key, encoder)
    captions = CaptionCache.open(cache_root, name=None if caption_key else name, key=caption_key)
    return audio, captions


def open_extras(cache_root: Path, main_name: str | None, cfg: TrainConfig,
                recorded: list[dict] | None = None) -> list[Source]:
    """The datasets of `cfg.extra`, each training on its own train split: on a fresh run the newest caches of each
    name whose features fit the encoder; on a resume (`recorded`: RUN_DIR/run.json's "extras") exactly the
    caches the run started with, by key."""
    if cfg.extra and not main_name:
        raise ConfigError("config key 'extra' needs --name: the main dataset, whose validation split decides "
                          "early stopping and the best checkpoint")
    by_name = {r["name"]: r for r in recorded or []}
    out = []
    for item in cfg.extra:
        name, weight = parse_extra(item)
        if name == main_name:
            raise ConfigError(f"config key 'extra': {name!r} is the main dataset (--name) already")
        if recorded is not None and name not in by_name:
            raise ConfigError(f"{RUN_INFO} of this run records no extra cache {name!r}")
        rec = by_name.get(name, {})
        audio, captions = open_caches(cache_root, name, rec.get("audio_key"), rec.get("caption_key"),
                                      cfg.audio_encoder)
        try:
            split = resolve_split("train", set(audio.splits))
        except ConfigError as exc:
            raise ConfigError(f"extra cache {name!r} ({audio.directory}): {exc}") from None
        out.append(Source(name, audio, captions, split, weight))
    return out


def register_caches(cache_root: Path, run_dir: Path, sources: list[Source]) -> None:
    """Record under CACHE/runs/ which caches this run reads, the main dataset's first (cache/runs.py: `cache ls`
    shows them, `cache gc` keeps them). A read-only cache root only costs the record: the run goes on, warned."""
    from audioret.cache.runs import CacheUse, register_run

    uses = [CacheUse(kind, cache.manifest.name, cache.key, "extra" if i else "main")
            for i, s in enumerate(sources) for kind, cache in (("audio", s.audio), ("captions", s.captions))]
    try:
        register_run(cache_root, run_dir, uses)
    except OSError as exc:
        print(f"warning: {cache_root}: cannot record this run under runs/ ({exc.strerror}); `cache ls` will not "
              "list it", file=sys.stderr, flush=True)

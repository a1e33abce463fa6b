"""The `folder` dataset kind and the keyed feature cache of a plain folder of audio files.

Why a dataset kind for a folder: a challenge's evaluation set, or any folder a user wants to search, is audio files
without captions. Reading it through `register_dataset` lets `prep audio`'s keyed, resumable, failure-tolerant
cache serve `predict` and `retrieve --audio-dir`, so a second call over the same folder, with any run, decodes
nothing. The kind's rules (which files, clip ids, split): docs/data.md.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from audioret.pipeline.datasets import ClipRecord, DatasetError, Problems, register_dataset

FOLDER_SPLIT = "folder"
#: Suffixes soundfile (libsndfile) decodes; matched case-insensitively.
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif", ".caf"})
CACHE_ENV = "AUDIORET_CACHE"


def default_cache_root() -> Path:
    """Where `predict` / `retrieve --audio-dir` keep folder features unless `--cache` says otherwise:
    $AUDIORET_CACHE, else $XDG_CACHE_HOME/audioret, else ~/.cache/audioret."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "audioret"


def audio_files(root: Path) -> list[Path]:
    """Every non-hidden file under `root` with an audio suffix, sorted by relative path."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in files
                  if not f.startswith(".") and Path(f).suffix.lower() in AUDIO_SUFFIXES]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def load_folder(root: Path, manifest: Path | None = None, splits: list[str] | None = None,
                encoding: str | None = None) -> tuple[list[ClipRecord], Problems]:
    """Records of every audio file under `root` (see the module docstring); `manifest` is not used, nor
    `encoding` (a folder has no text file to read)."""
    if manifest is not None:
        raise DatasetError(f"{manifest}: the folder kind reads no manifest; give the folder as --root")
    if not root.is_dir():
        raise DatasetError(f"{root}: audio folder is not a directory")
    if splits and len(splits) > 1:
        raise DatasetError(f"{root}: a folder is one split; give at most one split name (got {', '.join(splits)})")
    split = splits[0] if splits else FOLDER_SPLIT
    files = audio_files(root)
    if not files:
        raise DatasetError(f"{root}: no audio files in this folder (looked for {', '.join(sorted(AUDIO_SUFFIXES))})")
    return [ClipRecord(p.relative_to(root).as_posix(), split, p) for p in files], []


register_dataset("folder", load_folder)


def folder_features(audio_dir: Path, cache_root: Path | None = None, workers: int | None = None,
                    progress: bool = True, wait_lock: float | None = None,
                    report: Callable[[str], None] | None = None, features: str = "panns"):
    """(AudioCache of the folder, PrepResult): the folder's log-mels from its keyed cache, made on first use.

    The same library call as `prep audio --dataset folder` (not a subprocess), so a finished cache is found by
    its key and nothing is decoded again; files that failed are in `PrepResult.failures`, the rest in the cache.
    `features` is the definition a run's encoder needs (pipeline/feature_defs.py). Raises DatasetError when the
    folder holds no audio file.
    """
    from audioret.cache.audio_shards import AudioCache
    from audioret.pipeline.prep_audio import prep_audio

    result = prep_audio("folder", Path(audio_dir), Path(cache_root or default_cache_root()), name="folder",
                        workers=workers, wait_lock=wait_lock, progress=progress, report=report,
                        features=features)
    return AudioCache(result.cache_dir), result

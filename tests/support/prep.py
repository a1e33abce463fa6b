"""Helpers shared by the prep-audio tests and benchmark: real-ish clip sets and an independent cache check.

Clips are built from the bundled real recordings (decoded, concatenated, gain-varied, re-encoded with
soundfile) so the pipeline sees real spectra, real codecs and real sample rates, only more of them.
"""
from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import soundfile as sf

from audioret.cache.manifest import Manifest
from audioret.cache.shards import payload_checksum
from support import AUDIO


def real_sources() -> list[tuple[np.ndarray, int]]:
    """(mono float32 samples, rate) of every bundled clip, decoded once."""
    out = []
    for p in sorted(p for p in AUDIO.rglob("*") if p.suffix.lower() in {".mp3", ".flac", ".wav"}):
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
        out.append((data.mean(axis=1), rate))
    return out


def make_clips(folder: Path, n: int, seconds: float = 2.0, seed: int = 0) -> list[Path]:
    """`n` distinct clips of about `seconds` each: concatenated real recordings at their own rate, written as
    WAV or FLAC in turn (names with spaces and a comma so the whole path handles them)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = real_sources()
    paths = []
    for i in range(n):
        y, rate = sources[i % len(sources)]
        parts, total = [], 0
        while total < seconds * rate:
            z, r = sources[int(rng.integers(len(sources)))]
            if r == rate:
                parts.append(z)
                total += len(z)
            else:
                parts.append(y)
                total += len(y)
        clip = np.concatenate(parts)[: int(seconds * rate)] * np.float32(10 ** (rng.uniform(-6, 0) / 20))
        ext = ".flac" if i % 2 else ".wav"
        path = folder / f"clip {i:03d}, take{ext}"
        sf.write(str(path), clip, rate, subtype="PCM_16")
        paths.append(path)
    return paths


def write_manifest(path: Path, files: list[Path | str], split_of=lambda i: "development") -> Path:
    """A manifest CSV listing `files` relative to the manifest's folder where possible."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "file_name", "caption_1"])
        for i, p in enumerate(files):
            p = Path(p)
            name = p.relative_to(path.parent) if p.is_absolute() and p.is_relative_to(path.parent) else p
            w.writerow([split_of(i), str(name), f"caption {i}"])
    return path


def check_cache(cache_dir: Path) -> Manifest:
    """Independent integrity check: complete manifest, every shard present with the planned clips (minus recorded
    failures), payload checksum = file attribute = manifest entry, offsets consistent, no temp files left."""
    m = Manifest.read(cache_dir)
    assert m.complete, f"{cache_dir}: manifest not complete"
    failed = {f.get("clip_id") for f in m.extra.get("failures", [])}
    for entry in m.shards:
        planned = [c for c in m.clip_ids[entry.start:entry.start + entry.count] if c not in failed]
        with h5py.File(cache_dir / entry.file, "r") as h5:
            sha = payload_checksum(h5)
            assert sha == h5.attrs["payload_sha256"] == entry.sha256, f"{entry.file}: checksum mismatch"
            assert h5.attrs["cache_key"] == m.key
            ids = list(h5["clip_ids"].asstr()[()]) if len(h5["clip_ids"]) else []
            assert ids == planned, f"{entry.file}: clips {ids} != planned {planned}"
            offsets = h5["offsets"][()]
            assert offsets[0] == 0 and offsets[-1] == h5["features"].shape[0] == entry.n_frames
            assert h5["features"].dtype == np.float16 and h5["features"].chunks is None
    leftovers = [p.name for p in cache_dir.iterdir() if ".tmp-" in p.name]
    assert not leftovers, f"temp files left: {leftovers}"
    return m

"""Damaged shards are refused, not read: a few flipped bytes inside the features matrix (a still-readable HDF5
file) stop `train`, `eval` and `retrieve` with one line naming the shard and the repair; `--no-verify` reads on
with a warning; a truncated shard is one line naming the file, never an h5py traceback. Real caches made by the
real CLI from generated audio, real subprocesses."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from audioret.cache.audio_shards import AudioCache, build_audio_cache
from audioret.cache.integrity import forget_verified
from audioret.cache.manifest import CacheIntegrityError, Manifest, cache_dir_for
from audioret.cache.shards import FAST_CHECKSUM_ATTR
from support import REPO, cli_env, run_cli
from support.demo import fast_overrides


def flip_feature_bytes(shard: Path, where: float = 0.5, n: int = 4) -> None:
    """XOR `n` bytes inside the features payload (found at its file offset), leaving the HDF5 file readable."""
    with h5py.File(shard, "r") as f:
        ds = f["features"]
        start, size = ds.id.get_offset(), ds.size * ds.dtype.itemsize
    pos = start + int(size * where)
    with open(shard, "r+b") as fh:
        fh.seek(pos)
        old = fh.read(n)
        fh.seek(pos)
        fh.write(bytes(b ^ 0xFF for b in old))


@contextlib.contextmanager
def damaged(shard: Path, how: str):
    """The shard flipped or truncated for the duration of the block, then restored byte for byte."""
    original = shard.read_bytes()
    if how == "flip":
        flip_feature_bytes(shard)
    else:
        with open(shard, "r+b") as fh:
            fh.truncate(len(original) // 2)
    try:
        yield shard
    finally:
        shard.write_bytes(original)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def cache_copy(demo_cache, tmp_path_factory) -> Path:
    """A private copy of the shared demo cache (tests damage and restore its shards)."""
    return Path(shutil.copytree(demo_cache, tmp_path_factory.mktemp("integrity") / "cache"))


@pytest.fixture(scope="module")
def run(cache_copy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    run_cli("train", "--cache", cache_copy, "--name", "demo", "--out", out, *fast_overrides(1), "--no-progress",
            check=True)
    return out


def shard_of(cache: Path, kind: str) -> Path:
    (d,) = sorted((cache / kind).iterdir())
    return d / Manifest.read(d).shards[0].file


def test_flipped_feature_bytes_stop_train_eval_retrieve_with_one_line(cache_copy, run, tmp_path):
    shard = shard_of(cache_copy, "audio")
    with damaged(shard, "flip"):
        procs = {
            "train": run_cli("train", "--cache", cache_copy, "--name", "demo", "--out", tmp_path / "new",
                             *fast_overrides(1), "--no-progress"),
            "eval": run_cli("eval", run),
            "retrieve": run_cli("retrieve", run, "a high beep"),
        }
        for what, proc in procs.items():
            assert proc.returncode == 1, (what, proc.stderr)
            (line,) = error_lines(proc)
            assert str(shard) in line and "checksum mismatch" in line, (what, line)
            assert "audioret cache verify" in line and "audioret prep audio" in line, line
        assert not (tmp_path / "new" / "checkpoints").exists()  # refused before any training

        skipped = run_cli("eval", run, "--no-verify")
        assert skipped.returncode == 0, skipped.stderr
        assert "--no-verify: shard checksums are not checked" in skipped.stderr
        assert "mAP@10" in skipped.stdout


def test_truncated_shards_are_one_line_naming_the_file(cache_copy, run, tmp_path):
    audio, captions = shard_of(cache_copy, "audio"), shard_of(cache_copy, "captions")
    with damaged(audio, "truncate"):
        for args in (["train", "--cache", cache_copy, "--name", "demo", "--out", tmp_path / "t", *fast_overrides(1),
                      "--no-progress"], ["eval", run]):
            proc = run_cli(*args)
            assert proc.returncode == 1, (args[0], proc.stderr)
            (line,) = error_lines(proc)
            assert f"{audio}: unreadable audio shard (" in line and "truncated" in line, line
        proc = run_cli("cache", "verify", cache_copy)
        assert proc.returncode == 1 and f"{audio}: unreadable" in proc.stderr and "Traceback" not in proc.stderr
    with damaged(captions, "truncate"):
        proc = run_cli("preview", "captions", "--cache", cache_copy, "--name", "demo", "-n", "1")
        assert proc.returncode == 1
        (line,) = error_lines(proc)
        assert f"{captions}: unreadable captions shard (" in line, line


def test_flipped_caption_shard_is_refused(cache_copy):
    shard = shard_of(cache_copy, "captions")
    with h5py.File(shard, "r") as f:
        ds = f["offsets"]  # a numeric dataset of the captions shard, at its file offset
        pos = ds.id.get_offset() + 8
    original = shard.read_bytes()
    try:
        with open(shard, "r+b") as fh:
            fh.seek(pos)
            fh.write(b"\xff\xff\xff\xff")
        proc = run_cli("preview", "captions", "--cache", cache_copy, "--name", "demo", "-n", "1", "--draws", "0")
        assert proc.returncode == 1
        (line,) = error_lines(proc)
        assert str(shard) in line and "checksum mismatch" in line and "audioret prep captions" in line
    finally:
        shard.write_bytes(original)


def _small_cache(root: Path) -> AudioCache:
    rng = np.random.default_rng(0)
    feats = {f"c{i}.wav": rng.normal(-40, 10, size=(50 + i, 64)).astype(np.float16) for i in range(6)}
    m = build_audio_cache(root, feats, {"n_mels": 64}, name="t", shard_size=3)
    return AudioCache(cache_dir_for(root, "audio", m.key))


def test_check_runs_once_per_process_and_again_in_a_new_one(tmp_path):
    """Once a shard passed in this process it is not re-hashed (same file identity); a new process checks anew."""
    forget_verified()
    cache = _small_cache(tmp_path)
    cache.get(0)  # shard 0 checked and mapped
    shard = cache.directory / "shard-00000.h5"
    st = shard.stat()
    flip_feature_bytes(shard)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))  # same identity as when it was checked
    assert AudioCache(cache.directory).get(1).shape == (51, 64)  # a second open in this process: not re-hashed
    with pytest.raises(CacheIntegrityError, match="shard-00000.h5: payload checksum mismatch"):
        forget_verified()
        AudioCache(cache.directory).get(1)
    code = f"from audioret.cache.audio_shards import AudioCache; AudioCache({str(cache.directory)!r}).get(0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), cwd=REPO)
    assert proc.returncode == 1 and "CacheIntegrityError" in proc.stderr
    assert AudioCache(cache.directory, verify=False).get(4).shape == (54, 64)  # shard 1 untouched; verify off
    forget_verified()
    assert AudioCache(cache.directory, verify=False).get(0).shape == (50, 64)  # damaged, read as it is


def test_shards_without_fast_digest_fall_back_to_sha256(tmp_path):
    forget_verified()
    cache = _small_cache(tmp_path)
    shard = cache.directory / "shard-00001.h5"
    with h5py.File(shard, "r+") as f:  # what a shard written before the fast digest looks like
        del f.attrs[FAST_CHECKSUM_ATTR]
    with pytest.warns(UserWarning, match="predate the fast payload checksum"):
        assert AudioCache(cache.directory).get(3).shape == (53, 64)
    forget_verified()
    flip_feature_bytes(shard)
    with pytest.raises(CacheIntegrityError, match="shard-00001.h5: payload checksum mismatch"):
        AudioCache(cache.directory).get(3)


def test_deleting_the_damaged_shard_and_rerunning_prep_repairs_it(cache_copy, demo_cache, tmp_path):
    """The repair the error message names: delete the shard, re-run prep with the same arguments."""
    copy = tmp_path / "cache"
    shutil.copytree(cache_copy, copy)
    shard = shard_of(copy, "audio")
    flip_feature_bytes(shard)
    forget_verified()
    with pytest.raises(CacheIntegrityError):
        AudioCache(shard.parent).load_all()
    shard.unlink()
    data = demo_cache.parent / "data"  # what the cache was made from
    run_cli("prep", "audio", "--dataset", "clotho", "--root", data, "--cache", copy, "--name", "demo",
            "--workers", "1", "--no-progress", check=True)
    forget_verified()
    assert AudioCache(shard.parent).load_all()[0].shape[0] > 0

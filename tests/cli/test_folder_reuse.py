"""A folder's cache after one file changed: only that file is decoded, the others' features are copied from the
older cache (pipeline/feature_reuse.py), and `cache gc` removes the superseded older cache unless a run uses it
(cache/gc.py). Real audio from tests/data/audio, the real CLI in subprocesses."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from audioret.cache.audio_shards import AudioCache
from audioret.cache.runs import CacheUse, register_run
from support import AUDIO, run_cli


def folder_of_clips(root: Path) -> Path:
    root.mkdir(parents=True)
    for mp3 in sorted((AUDIO / "animals_cc0").glob("*.mp3")):
        shutil.copy(mp3, root / mp3.name)
    shutil.copy(AUDIO / "sonic_pi_cc0" / "loop_amen.flac", root / "amen.flac")
    return root


def prep_folder(root: Path, cache: Path, *extra: str):
    proc = run_cli("prep", "audio", "--dataset", "folder", "--root", root, "--cache", cache, "--workers", "1",
                   "--no-progress", *extra)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1]), proc.stderr


def features(cache_dir: Path) -> dict[str, np.ndarray]:
    audio = AudioCache(cache_dir)
    return {c: np.array(audio.get(c)) for c in audio.clip_ids}


def test_touching_one_file_decodes_only_it_and_gc_removes_the_old_copy(tmp_path: Path) -> None:
    root, cache = folder_of_clips(tmp_path / "recordings"), tmp_path / "cache"
    old, _ = prep_folder(root, cache)
    before = features(old)
    st = os.stat(root / "dog.mp3")
    os.utime(root / "dog.mp3", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: a new key
    shutil.copy(AUDIO / "fsdd_ccbysa" / "0_george_0.wav", root / "zero.wav")  # and one file added
    new, stderr = prep_folder(root, cache)
    assert new != old and "2 clip(s) decoded, 6 unchanged ones copied from an older cache" in stderr
    after = features(new)
    assert sorted(after) == sorted([*before, "zero.wav"])
    for clip in before:  # copied or decoded again: the same float16 features
        assert np.array_equal(after[clip], before[clip]), clip

    plan = run_cli("cache", "gc", cache)
    assert f"would remove {old} (superseded by {new.name}, the folder's newer cache)" in plan.stdout
    assert str(new) not in plan.stdout.replace(f"by {new.name}", "")
    done = run_cli("cache", "gc", cache, "--yes")
    assert done.returncode == 0 and f"removing {old}" in done.stdout
    assert not old.exists() and features(new).keys() == after.keys()
    assert "nothing to remove" in run_cli("cache", "gc", cache).stdout


def test_gc_keeps_a_superseded_folder_cache_a_run_uses(tmp_path: Path) -> None:
    root, cache = folder_of_clips(tmp_path / "recordings"), tmp_path / "cache"
    old, _ = prep_folder(root, cache)
    (root / "sheep.mp3").unlink()  # a file removed: a new key, nothing to decode
    new, stderr = prep_folder(root, cache)
    assert "0 clip(s) decoded, 6 unchanged ones copied" in stderr
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    register_run(cache, run_dir, [CacheUse("audio", "folder", AudioCache(old).key, "main")])
    plan = run_cli("cache", "gc", cache, "--yes")
    assert f"in use, left alone: {old} (run {run_dir.resolve()})" in plan.stdout and old.is_dir() and new.is_dir()


def test_an_unchanged_folder_still_makes_nothing_new(tmp_path: Path) -> None:
    root, cache = folder_of_clips(tmp_path / "recordings"), tmp_path / "cache"
    first, _ = prep_folder(root, cache)
    again, stderr = prep_folder(root, cache)
    assert again == first and "nothing to do" in stderr
    other = folder_of_clips(tmp_path / "other")  # the same files in another folder: not a donor, not superseded
    third, stderr = prep_folder(other, cache)
    assert "copied" not in stderr and third != first
    assert "nothing to remove" in run_cli("cache", "gc", cache).stdout

"""`audioret cache ls | verify | gc` through the real CLI on real shard files."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from audioret.cache.manifest import cache_dir_for
from audioret.pipeline.audio_io import file_log_mel
from support import AUDIO, cli_cmd, cli_env, real_clips, run_cli
from support.shards import build_cache


@pytest.fixture(scope="module")
def feats() -> dict[str, np.ndarray]:
    return {p.name: file_log_mel(p) for p in real_clips()[:4]}


def test_ls_and_verify_ok(tmp_path, feats):
    m = build_cache(tmp_path, feats, name="animals")
    out = run_cli("cache", "ls", tmp_path, check=True).stdout
    assert "animals" in out and "complete" in out and m.key[:16] in out
    ok = run_cli("cache", "verify", tmp_path, m.key[:8], check=True)
    assert "ok" in ok.stdout


def test_verify_names_the_bad_shard(tmp_path, feats):
    m = build_cache(tmp_path, feats, name="animals")
    shard = cache_dir_for(tmp_path, "audio", m.key) / m.shards[1].file
    with h5py.File(shard, "r+") as f:  # flip one feature value in place: bit rot
        f["features"][0, 0] = f["features"][0, 0] + 1
    proc = run_cli("cache", "verify", tmp_path)
    assert proc.returncode == 1
    assert str(shard) in proc.stderr and "checksum" in proc.stderr
    assert m.shards[0].file not in proc.stderr


def test_verify_missing_shard_and_unknown_key(tmp_path, feats):
    m = build_cache(tmp_path, feats)
    (cache_dir_for(tmp_path, "audio", m.key) / m.shards[0].file).unlink()
    proc = run_cli("cache", "verify", tmp_path)
    assert proc.returncode == 1 and "missing shard" in proc.stderr
    assert run_cli("cache", "verify", tmp_path, "ffffffff").returncode == 1


def test_gc_removes_dead_temp_files_and_incomplete_caches(tmp_path, feats):
    m = build_cache(tmp_path, feats)
    d = cache_dir_for(tmp_path, "audio", m.key)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = d / f"shard-00000.h5.tmp-{dead.pid}-abcd1234"
    live = d / f"shard-00001.h5.tmp-{os.getpid()}-abcd1234"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    incomplete = tmp_path / "audio" / "0123456789abcdef"
    incomplete.mkdir()
    dry = run_cli("cache", "gc", tmp_path, check=True)
    assert "would remove" in dry.stdout and stale.exists()
    run_cli("cache", "gc", tmp_path, "--yes", check=True)
    assert not stale.exists() and live.exists() and not incomplete.exists() and d.exists()
    assert run_cli("cache", "verify", tmp_path).returncode == 0


def _incomplete_copy(tmp_path, m, dir_name: str):
    """A key-named cache folder as a killed prep leaves it: incomplete manifest, one shard, a dead writer's temp."""
    src, d = cache_dir_for(tmp_path, "audio", m.key), tmp_path / "audio" / dir_name
    d.mkdir()
    dataclasses.replace(m, complete=False).write(d)
    shutil.copy(src / m.shards[0].file, d / m.shards[0].file)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (d / f"{m.shards[1].file}.tmp-{dead.pid}-0badc0de").write_bytes(b"half a shard")
    (d / ".lock").write_text(str(dead.pid))
    return d


def test_gc_deletes_only_what_the_tool_wrote(tmp_path, feats):
    m = build_cache(tmp_path, feats)
    mine = tmp_path / "audio" / "my_recordings"  # the user's own folder beside the caches
    mine.mkdir()
    shutil.copy(AUDIO / "fsdd_ccbysa" / "0_george_0.wav", mine / "0_george_0.wav")
    (mine / "notes.txt").write_text("recorded on the balcony\n")
    (tmp_path / "captions").mkdir()
    loose = tmp_path / "captions" / "README.txt"
    loose.write_text("my captions go here\n")
    abandoned = _incomplete_copy(tmp_path, m, "0123456789abcdef")  # nobody writes it any more: goes whole
    shared = _incomplete_copy(tmp_path, m, "fedcba9876543210")  # the same, but a user put a file into it
    shutil.copy(AUDIO / "fsdd_ccbysa" / "1_jackson_0.wav", shared / "keep me.wav")
    (shared / "sub").mkdir()

    dry = run_cli("cache", "gc", tmp_path, check=True).stdout
    for p in (mine, loose, shared / "keep me.wav", shared / "sub"):
        assert f"not ours, left alone: {p}\n" in dry
    stays = f"the cache files in {shared} (the folder stays: it holds files this tool did not write)\n"
    assert f"would remove {abandoned}\n" in dry and f"would remove {shared}\n" not in dry
    assert f"would remove {stays}" in dry  # what --yes does, said beforehand
    assert str(cache_dir_for(tmp_path, "audio", m.key)) not in dry  # a complete cache is never garbage
    out = run_cli("cache", "gc", tmp_path, "--yes", check=True).stdout
    assert f"removing {abandoned}\n" in out and f"removing {stays}" in out and "kept" not in out

    assert sorted(p.name for p in mine.iterdir()) == ["0_george_0.wav", "notes.txt"]
    assert (mine / "0_george_0.wav").read_bytes() == (AUDIO / "fsdd_ccbysa" / "0_george_0.wav").read_bytes()
    assert loose.exists() and not abandoned.exists()
    assert sorted(p.name for p in shared.iterdir()) == ["keep me.wav", "sub"]  # only the tool's files went
    assert "my_recordings" not in run_cli("cache", "ls", tmp_path, check=True).stdout  # not a cache at all
    verify = run_cli("cache", "verify", tmp_path)  # the key-named leftover is a broken cache, the user's folder not
    assert verify.returncode == 1 and str(shared) in verify.stderr and "my_recordings" not in verify.stderr


def test_ls_shows_the_feature_definition_and_the_source_folder(tmp_path):
    """Two folder caches of one folder, PANNs and PaSST features: `cache ls` tells them apart and names the folder."""
    clips = tmp_path / "my clips"
    clips.mkdir()
    shutil.copy(AUDIO / "fsdd_ccbysa" / "0_george_0.wav", clips / "a.wav")
    for features in ("panns", "passt"):
        run_cli("prep", "audio", "--dataset", "folder", "--root", clips, "--cache", tmp_path / "c", "--workers", "1",
                "--no-progress", "--features", features, check=True)
    rows = run_cli("cache", "ls", tmp_path / "c", check=True).stdout.splitlines()
    assert rows[0].split()[:4] == ["kind", "name", "dataset", "features"] and rows[0].split()[-1] == "source"
    audio = sorted(r for r in rows[1:] if r.startswith("audio"))
    assert len(audio) == 2 and all(r.endswith(str(clips.resolve())) for r in audio)
    assert sorted(r.split()[3] for r in audio) == ["panns-logmel", "passt-mel"]


def test_help_has_examples():
    for sub in ("ls", "verify", "gc"):
        out = subprocess.run(cli_cmd("cache", sub, "--help"), capture_output=True, text=True, env=cli_env()).stdout
        assert "Example" in out

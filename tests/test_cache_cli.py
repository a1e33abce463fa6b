"""`audioret cache ls | verify | gc` through the real CLI on real shard files."""
from __future__ import annotations

import os
import subprocess

import h5py
import numpy as np
import pytest

from cache.manifest import cache_dir_for
from conftest import cli_cmd, cli_env, real_clips, run_cli
from pipeline.audio_io import file_log_mel
from test_audio_shards import build_cache


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


def test_help_has_examples():
    for sub in ("ls", "verify", "gc"):
        out = subprocess.run(cli_cmd("cache", sub, "--help"), capture_output=True, text=True, env=cli_env()).stdout
        assert "Example" in out

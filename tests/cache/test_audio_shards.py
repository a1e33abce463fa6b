"""The audio shard writer and AudioCache reader on real HDF5 files built from real clips."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from audioret.cache.audio_shards import AudioCache, CacheIntegrityError
from audioret.cache.manifest import CacheNotFoundError, cache_dir_for, resolve_cache
from audioret.cache.shards import file_checksum
from audioret.pipeline.audio_io import file_log_mel
from support import real_clips
from support.shards import build_cache


@pytest.fixture(scope="module")
def real_feats() -> dict[str, np.ndarray]:
    return {p.name: file_log_mel(p) for p in real_clips()[:7]}


def test_round_trip_by_id_and_index(tmp_path, real_feats):
    m = build_cache(tmp_path, real_feats, shard_size=3)
    cache = AudioCache.open(tmp_path, name="t")
    assert cache.clip_ids == sorted(real_feats)
    for i, cid in enumerate(cache.clip_ids):
        want = real_feats[cid].astype(np.float16)
        assert np.array_equal(cache.get(cid), want)
        assert np.array_equal(cache.get(i), want)
        assert cache.lengths()[i] == want.shape[0]
    view = cache.get(0)
    assert not view.flags.writeable
    with h5py.File(cache.directory / m.shards[0].file) as f:
        ds = f["features"]
        assert ds.chunks is None and ds.compression is None and ds.dtype == np.float16
        assert f["offsets"].dtype == np.int64 and len(f["offsets"]) == m.shards[0].count + 1
    assert file_checksum(cache.directory / m.shards[0].file) == m.shards[0].sha256


def test_load_all_matches_get(tmp_path, real_feats):
    build_cache(tmp_path, real_feats, shard_size=2)
    cache = AudioCache.open(tmp_path)
    feats, offsets, ids = cache.load_all()
    assert ids == cache.clip_ids and feats.dtype == np.float16
    for j, cid in enumerate(ids):
        assert np.array_equal(feats[offsets[j]:offsets[j + 1]], cache.get(cid))
    sub, sub_off, sub_ids = cache.load_all([4, 1])
    assert sub_ids == [ids[4], ids[1]]
    assert np.array_equal(sub[sub_off[1]:sub_off[2]], cache.get(1))


def test_reader_reopens_after_fork(tmp_path, real_feats):
    build_cache(tmp_path, real_feats)
    cache = AudioCache.open(tmp_path)
    parent = cache.get(3).copy()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the inherited reader must re-open its maps and read the same bytes
        try:
            ok = np.array_equal(cache.get(3), parent) and cache._pid == os.getpid()
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"


def test_incomplete_and_foreign_shards_are_refused(tmp_path, real_feats):
    m = build_cache(tmp_path, real_feats)
    d = cache_dir_for(tmp_path, "audio", m.key)
    m.complete = False
    m.write(d)
    with pytest.raises(CacheNotFoundError, match="only incomplete"):
        resolve_cache(tmp_path, "audio", name="t")
    with pytest.raises(CacheIntegrityError, match="incomplete"):
        AudioCache(d)
    m.complete = True
    m.write(d)
    with h5py.File(d / m.shards[0].file, "a") as f:
        f.attrs["cache_key"] = "someone-else"
    with pytest.raises(CacheIntegrityError, match="belongs to cache"):
        AudioCache(d)

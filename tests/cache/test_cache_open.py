"""Opening caches at scale, on real shards written by the project's own writers: the payload digest is the
documented byte stream (recomputed here item by item), the column-wise caption join equals the row-by-row one,
caption views are unchanged, and a reader needing more shard maps than the open-file limit allows still works."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import xxhash

from audioret.cache.audio_shards import AudioCache, build_audio_cache
from audioret.cache.caption_shards import CaptionCache, build_caption_cache, write_caption_shard
from audioret.cache.shards import CHECKSUM_ATTR, FAST_CHECKSUM_ATTR, payload_digests
from audioret.trainer.data import caption_table
from support import REPO

CONFIG = {"n_mels": 4, "sample_rate": 32000, "hop_length": 320}


def reference_stream(path: Path, hasher) -> str:
    """The payload digest as cache/shards.py documents it, one update per item: per dataset in sorted name order
    its name, shape, then "str" and each UTF-8 string with its 8-byte length, or its dtype and raw bytes."""
    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        h = hasher()
        for name in sorted(names):
            ds = f[name]
            h.update(name.encode() + b"\0")
            h.update(repr(tuple(ds.shape)).encode() + b"\0")
            if h5py.check_string_dtype(ds.dtype) is not None:
                h.update(b"str\0")
                for item in ds.asstr()[()].reshape(-1).tolist():
                    data = item.encode("utf-8")
                    h.update(len(data).to_bytes(8, "little") + data)
            else:
                h.update(np.dtype(ds.dtype).str.encode() + b"\0")
                h.update(np.ascontiguousarray(ds[()]).tobytes())
        return h.hexdigest()


def test_payload_digests_are_the_documented_stream(tmp_path: Path) -> None:
    caps = [["a dog barks", "ein Hund bellt 🐕"], [""], ["naïve café", "x" * 5000, "tab\there"]]
    config = {"backend": "marian", "pivots": ["de"], "normalisation": "test", "models": {}}
    write_caption_shard(tmp_path / "c.h5", ["b.wav", "a.wav", "ü.wav"], ["dev", "dev", "val"], caps, caps,
                        {"de": caps}, {"de": caps}, "k", config)
    m = build_audio_cache(tmp_path / "cache", {f"c{i}": np.full((i + 1, 4), i, np.float16) for i in range(5)},
                          CONFIG, name="t", shard_size=5)
    audio_shard = tmp_path / "cache" / "audio" / m.dir_name / "shard-00000.h5"
    for shard in (tmp_path / "c.h5", audio_shard):
        with h5py.File(shard, "r") as f:
            got = payload_digests(f, ("sha256", "xxh3_128"))
            assert (got["sha256"], got["xxh3_128"]) == (f.attrs[CHECKSUM_ATTR], f.attrs[FAST_CHECKSUM_ATTR])
        assert got == {"sha256": reference_stream(shard, hashlib.sha256),
                       "xxh3_128": reference_stream(shard, xxhash.xxh3_128)}


def _caches(root: Path, n: int = 60) -> tuple[AudioCache, CaptionCache, dict[str, list[str]]]:
    """Audio for clips 0..n-1 except every seventh; captions (1 to 3 per clip, split by clip) for all of them."""
    ids = [f"clip{i:03d}.wav" for i in range(n)]
    feats = {c: np.full((3 + i % 5, 4), i, np.float16) for i, c in enumerate(ids) if i % 7}
    build_audio_cache(root, feats, CONFIG, name="t", shard_size=8)
    caps = {c: [f"caption {j} of clip {i}" for j in range(1 + i % 3)] for i, c in enumerate(ids)}
    splits = {c: ("development", "validation")[i % 4 == 0] for i, c in enumerate(ids)}
    build_caption_cache(root, caps, name="t", splits=splits, shard_size=16)
    return AudioCache.open(root, name="t"), CaptionCache.open(root, name="t"), caps


def test_caption_join_equals_the_row_by_row_join(tmp_path: Path) -> None:
    audio, captions, caps = _caches(tmp_path)
    for split in ("development", "validation"):
        rows = [(cid, i, text) for cid in sorted(caps) if captions.splits[captions.index_of(cid)] == split
                for i, text in enumerate(caps[cid])]
        assert captions.all_captions(split) == rows
        with_audio = [r for r in rows if r[0] in audio.clip_ids]
        with pytest.warns(UserWarning, match="clip\\(s\\) with captions but no audio features are skipped"):
            table = caption_table(audio, captions, split)
        assert table.clip_ids == [r[0] for r in with_audio]
        assert table.caption_index.tolist() == [r[1] for r in with_audio]
        assert table.texts == [r[2] for r in with_audio]
        assert table.clip_pos.tolist() == [audio.clip_ids.index(r[0]) for r in with_audio]
    for cid, texts in caps.items():
        assert captions.captions(cid) == captions.raw(cid) == texts and captions.back_translations(cid) == {}


def test_more_shards_than_open_files_allowed(tmp_path: Path) -> None:
    """A process whose open-file limit (soft = hard) is below the shard count reads every clip right: each
    memmap holds a descriptor, so the reader keeps only as many maps as fit; with a higher hard limit it raises
    its soft limit and keeps them all."""
    feats = {f"c{i:03d}": np.full((2 + i % 3, 4), i, np.float16) for i in range(160)}
    build_audio_cache(tmp_path, feats, CONFIG, name="t", shard_size=2)  # 80 shards
    child = f"""
import json, os, resource, sys
sys.path.insert(0, {str(REPO)!r})
import numpy as np
from audioret.cache.audio_shards import AudioCache
audio = AudioCache.open({str(tmp_path)!r}, name="t")
order = np.random.default_rng(0).permutation(len(audio)).tolist() * 2
ok = all(float(audio.get(i)[0, 0]) == int(audio.clip_ids[i][1:]) for i in order)
print(json.dumps({{"ok": ok, "maps": len(audio._maps), "budget": audio._map_budget,
                  "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}}))
"""

    def run(soft: int, hard: int) -> dict:
        def limit() -> None:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, preexec_fn=limit,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    tight = run(64, 64)  # 80 maps would not fit; half the limit stays free for the rest: 32 maps
    assert tight == {"ok": True, "maps": 32, "budget": 32, "soft": 64}
    roomy = run(64, 4096)
    assert roomy == {"ok": True, "maps": 80, "budget": 80, "soft": 80 + 256}

"""Training batches: every caption once per epoch, never two captions of one clip per batch, crops and padding,
and the resident and streamed paths producing the same batches from real caches."""
from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import torch

from audioret.cache.audio_shards import AudioCache
from audioret.cache.caption_shards import CaptionCache
from audioret.cache.feature_contract import FLOOR_DB
from audioret.trainer.config import load_config
from audioret.trainer.data import StreamedBatches, TrainData, crop_windows, pad_arrays, plan_batches
from audioret.trainer.encoders import feature_spec
from audioret.trainer.sources import DataError, check_audio_config


@pytest.mark.parametrize("n_clips,per_clip,batch", [(100, 5, 30), (7, 5, 4), (3, 10, 8), (50, 1, 16), (1, 3, 5)])
def test_plan_covers_every_caption_once_without_same_clip_pairs(n_clips, per_clip, batch):
    clip_of_row = np.repeat(np.arange(n_clips), per_clip)
    batches = plan_batches(clip_of_row, batch, np.random.default_rng(1))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(clip_of_row)))  # every caption exactly once
    for b in batches:
        assert 1 <= len(b) <= batch
        assert len(set(clip_of_row[b].tolist())) == len(b)  # no clip twice in a batch
    full = sum(len(b) == batch for b in batches)
    assert full >= len(clip_of_row) // batch - per_clip  # only the epoch's tail may hold small batches


def test_plan_is_seeded_and_varies_by_epoch():
    clip_of_row = np.repeat(np.arange(40), 5)
    a = plan_batches(clip_of_row, 30, np.random.default_rng([0, 1]))
    b = plan_batches(clip_of_row, 30, np.random.default_rng([0, 1]))
    c = plan_batches(clip_of_row, 30, np.random.default_rng([0, 2]))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=False))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=False))


def test_crop_windows_stay_inside_clips_and_are_uniform():
    rng = np.random.default_rng(0)
    lengths = np.array([50, 100, 101, 3000] * 500)
    starts, sizes = crop_windows(lengths, 100, rng)
    assert np.all(starts >= 0) and np.all(starts + sizes <= lengths)
    assert np.array_equal(sizes, np.minimum(lengths, 100))
    assert np.all(starts[lengths <= 100] == 0)
    assert set(starts[lengths == 101].tolist()) == {0, 1}
    long = starts[lengths == 3000]
    assert long.max() <= 2900 and 1200 < long.mean() < 1700  # uniform over 0..2900


def test_pad_arrays_floor_and_lengths():
    a = np.ones((3, 64), np.float16)
    b = np.full((5, 64), -20.0, np.float32)
    x, lengths = pad_arrays([a, b])
    assert x.shape == (2, 5, 64) and x.dtype == np.float32 and lengths.tolist() == [3, 5]
    assert np.all(x[0, 3:] == FLOOR_DB) and np.all(x[0, :3] == 1.0) and np.all(x[1] == -20.0)


def test_foreign_feature_config_is_refused():
    with pytest.raises(DataError, match="n_mels=128.*needs n_mels=64"):
        check_audio_config({"n_mels": 128, "sample_rate": 32000, "hop_length": 320}, "some/cache")
    with pytest.raises(DataError, match="sample_rate"):
        check_audio_config({"n_mels": 64, "sample_rate": 16000, "hop_length": 320}, "some/cache")
    assert check_audio_config({"n_mels": 64, "sample_rate": 32000, "hop_length": 320}, "x") == 100.0


def test_cache_of_another_feature_definition_is_refused_naming_both():
    from audioret.pipeline.feature_defs import feature_definition

    passt = feature_definition("passt").cache_config()
    with pytest.raises(DataError) as err:
        check_audio_config(passt, "some/cache")
    msg = str(err.value)
    assert "passt-mel (passt-mel-1)" in msg and "cnn10 encoder needs panns-logmel" in msg and "\n" not in msg
    assert "--features panns" in msg
    panns = feature_definition("panns").cache_config()
    assert panns["feature"] == feature_spec("cnn10").feature  # the trainer's name is pipeline's name
    assert check_audio_config(panns, "x") == 100.0


def test_newest_cache_that_fits_the_encoder_is_chosen_among_one_name(tmp_path):
    from audioret.cache.audio_shards import build_audio_cache
    from audioret.pipeline.feature_defs import feature_definition
    from audioret.trainer.sources import open_audio_cache

    one = {"a.wav": np.zeros((50, 64), np.float32)}
    legacy = build_audio_cache(tmp_path, one, {"n_mels": 64, "sample_rate": 32000, "hop_length": 320}, name="x")
    time.sleep(1.1)  # manifests record their creation to the second
    passt = build_audio_cache(tmp_path, {"a.wav": np.zeros((50, 128), np.float32)},
                              feature_definition("passt").cache_config(), name="x")
    assert AudioCache.open(tmp_path, name="x").key == passt.key  # the newest of the name holds PaSST mels
    assert open_audio_cache(tmp_path, "x").key == legacy.key  # a cache without a feature name is the PANNs one
    with pytest.raises(DataError, match="passt-mel"):
        open_audio_cache(tmp_path, "x", audio_key=passt.key)
    build_audio_cache(tmp_path, {"b.wav": np.zeros((50, 128), np.float32)},
                      feature_definition("passt").cache_config(), name="only-passt")
    with pytest.raises(DataError, match="passt-mel.*needs panns-logmel"):
        open_audio_cache(tmp_path, "only-passt")


def test_training_without_a_name_never_takes_a_folder_cache(tmp_path):
    """`predict --cache caches/` leaves an uncaptioned `folder` cache beside the training caches; `train` without
    --name takes the newest cache it can train on, not that one."""
    from audioret.cache.audio_shards import build_audio_cache
    from audioret.trainer.sources import open_audio_cache

    config = {"n_mels": 64, "sample_rate": 32000, "hop_length": 320}
    clotho = build_audio_cache(tmp_path, {"a.wav": np.zeros((50, 64), np.float32)}, config, name="clotho")
    time.sleep(1.1)  # manifests record their creation to the second
    folder = build_audio_cache(tmp_path, {"b.wav": np.zeros((50, 64), np.float32)}, config, name="folder",
                               dataset="folder", splits={"b.wav": "folder"})
    assert AudioCache.open(tmp_path).key == folder.key  # the newest cache of any name is the folder's
    assert open_audio_cache(tmp_path, None).key == clotho.key


@pytest.fixture(scope="module")
def caches(demo_cache):
    return AudioCache.open(demo_cache, name="demo"), CaptionCache.open(demo_cache, name="demo")


def test_resident_and_streamed_batches_are_identical(caches):
    audio, captions = caches
    cfg = load_config(None, ["max_seconds=0.7", "batch_size=8", "p_eda=0.5", "p_syn=0", "p_bt=0", "seed=3"])
    data = TrainData(audio, captions, "development", cfg, torch.device("cpu"))
    assert data.mode == "ram"
    plan = data.plan(2)
    rows = np.concatenate(plan.batches)
    assert sorted(rows.tolist()) == list(range(len(data.table)))
    streamed = StreamedBatches(audio, data.table, data.text, plan)
    for k, batch in enumerate(data.epoch(2)):
        item = streamed[k]
        assert torch.equal(batch.x, item["x"]) and torch.equal(batch.lengths, item["lengths"])
        assert batch.texts == item["texts"]
        assert torch.equal(batch.clip_pos, item["clip_pos"])
        assert len(set(batch.clip_pos.tolist())) == len(batch.texts)
        assert int(batch.lengths.max()) <= 70 and batch.x.shape[1] == int(batch.lengths.max())
        for i, n in enumerate(batch.lengths.tolist()):  # valid frames are a window of the cached clip
            clip = np.asarray(audio.get(int(batch.clip_pos[i])), np.float32)
            s = int(plan.starts[plan.batches[k][i]])
            assert np.array_equal(batch.x[i, :n].numpy(), clip[s:s + n])
            assert torch.all(batch.x[i, n:] == FLOOR_DB)


def test_streamed_workers_ship_float16_and_yield_the_resident_float32_batches(caches):
    """Workers send the stored float16 (half the bytes through shared memory); the trainer gets float32 equal to
    the resident path's, floor padding included."""
    audio, captions = caches
    sets = ["max_seconds=0.7", "batch_size=8", "p_eda=0", "p_bt=0", "seed=3"]
    resident = TrainData(audio, captions, "development", load_config(None, sets), torch.device("cpu"))
    streamed = TrainData(audio, captions, "development", load_config(None, sets + ["resident=stream",
                                                                                   "num_workers=2"]),
                         torch.device("cpu"))
    assert streamed.mode == "stream"
    assert StreamedBatches(audio, streamed.table, streamed.text, streamed.plan(1))[0]["x"].dtype == torch.float16
    pairs = list(zip(resident.epoch(1), streamed.epoch(1), strict=True))
    for a, b in pairs:
        assert b.x.dtype == torch.float32 and torch.equal(a.x, b.x) and torch.equal(a.lengths, b.lengths)
        assert a.texts == b.texts


def test_text_augmentation_is_seeded_and_changes_some_captions(caches):
    audio, captions = caches
    cfg = load_config(None, ["p_eda=1", "p_syn=0", "p_del=0.3", "p_bt=0.5", "seed=1"])
    with pytest.warns(UserWarning, match="p_bt=0.5 is treated as 0"):
        data = TrainData(audio, captions, "development", cfg, torch.device("cpu"))
    first = [t for b in data.epoch(1) for t in b.texts]
    again = [t for b in data.epoch(1) for t in b.texts]
    assert first == again
    plan_rows = np.concatenate(data.plan(1).batches)
    originals = [data.table.texts[r] for r in plan_rows]
    changed = sum(a != b for a, b in zip(first, originals, strict=False))
    assert 0 < changed < len(first)
    assert Counter(data.table.clip_ids[r] for r in plan_rows) == Counter(data.table.clip_ids)

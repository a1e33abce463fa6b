"""One recording in two caches of a run (trainer/source_ids.py): AudioCaps clips that WavCaps' AudioSet_SL part
holds again are found by their YouTube id from what the caches record, reported (stderr, run.json) and kept out
of each other's negatives: the loss's same-clip mask treats both copies as one clip."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audioret.trainer.config import load_config
from audioret.trainer.loss import mask_from_clip_ids
from audioret.trainer.source_ids import source_id
from support import run_cli
from support.demo import fast_overrides
from support.three_datasets import shared_id_caches


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return shared_id_caches(tmp_path_factory.getbasetemp())


def data_over(cache: Path, extra: str, sets: tuple[str, ...] = (), match_sources: bool = True):
    from audioret.cache.audio_shards import AudioCache
    from audioret.cache.caption_shards import CaptionCache
    from audioret.trainer.data import TrainData
    from audioret.trainer.sources import open_extras

    cfg = load_config(None, ["batch_size=32", "p_eda=0", "p_bt=0", f"extra={extra}", *sets])
    return TrainData(AudioCache.open(cache, name="audiocaps"), CaptionCache.open(cache, name="audiocaps"), "train",
                     cfg, torch.device("cpu"), open_extras(cache, "audiocaps", cfg) if extra else [], match_sources)


def test_source_ids_of_the_readers_clip_ids(cache):
    """What each reader's clip ids say about their source, read from the real caches' manifests."""
    from audioret.cache.audio_shards import AudioCache

    ac, wc = AudioCache.open(cache, name="audiocaps"), AudioCache.open(cache, name="wavcaps-as")
    assert (ac.manifest.dataset, wc.manifest.dataset) == ("audiocaps", "wavcaps")
    assert {source_id("audiocaps", c) for c in ac.clip_ids} == {f"youtube:ac{n:09d}" for n in range(13)}
    assert sorted(source_id("wavcaps", c) for c in wc.clip_ids) == [
        "freesound:900", "freesound:901", "freesound:902", "youtube:ac000000001", "youtube:ac000000003",
        "youtube:zz000000099"]
    assert source_id("wavcaps", "AudioSet_SL/Yabc-DEF_123_30.000.flac") == "youtube:abc-DEF_123"
    assert source_id("wavcaps", "BBC_Sound_Effects/07070190.flac") == "bbc:07070190"
    assert source_id("clotho", "Rain on a tin roof.wav") == "clotho:Rain on a tin roof.wav"
    for dataset, clip in (("audiocaps", "renamed.wav"), ("manifest", "ac000000001_0.wav"), ("folder", "a.wav"),
                          ("wavcaps", "AudioSet_SL/Yshort.flac")):
        assert source_id(dataset, clip) is None


def test_copies_share_one_identity_in_every_batch(cache):
    data = data_over(cache, "wavcaps-as")
    report = data.duplicates.report()
    assert report["count"] == 2 and report["by_datasets"] == {"wavcaps-as ~ audiocaps": 2}
    assert sorted(map(tuple, report["examples"])) == [("AudioSet_SL/Yac000000001.mp3", "ac000000001_0.wav"),
                                                      ("AudioSet_SL/Yac000000003_0.000.mp3", "ac000000003_0.wav")]
    wavcaps = data.sources[1].audio
    ac = data.sources[0].audio
    copies = {int(data.audio.offsets[1]) + wavcaps.clip_ids.index(later): ac.clip_ids.index(first)
              for later, first in report["examples"]}
    seen = 0
    for stream in (False, True):
        source = data if not stream else data_over(cache, "wavcaps-as", ("resident=stream", "num_workers=0"))
        for batch in source.epoch(1):
            pos, same = batch.clip_pos.tolist(), batch.same_clip.tolist()
            assert [copies.get(p, p) for p in pos] == same  # copies take their first's position, nothing else moves
            mask = mask_from_clip_ids(batch.same_clip)
            for i, p in enumerate(pos):
                for j, q in enumerate(pos):
                    if copies.get(p) == q:  # both copies in one batch: masked out of each other's negatives
                        assert mask[i, j] and mask[j, i] and not mask_from_clip_ids(batch.clip_pos)[i, j]
                        seen += 1
    assert seen == 4  # each of the two pairs once per epoch, resident and streamed (batch 32 holds every row)
    legacy = data_over(cache, "wavcaps-as", match_sources=False)  # the resume of a run from before: as it began
    assert legacy.same_clip is None and all(b.same_clip is None for b in legacy.epoch(1))
    alone = data_over(cache, "")
    assert alone.duplicates is None and alone.same_clip is None
    assert all(b.same_clip is None for b in alone.epoch(1))  # one cache: batches exactly as before


def test_a_run_reports_the_duplicates_on_stderr_and_in_run_json(cache, tmp_path):
    run = tmp_path / "run"
    proc = run_cli("train", "--cache", cache, "--name", "audiocaps", "--extra", "wavcaps-as", "--out", run,
                   *fast_overrides(1, ["max_seconds=1"]), "--no-progress", check=True)
    assert "train: 2 training clip(s) are one recording in two caches, by source id: wavcaps-as ~ audiocaps (2)" \
        in proc.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["duplicate_clips"]["count"] == 2 and info["clip_identity"] == "source-id"
    assert info["duplicate_clips"]["by_datasets"] == {"wavcaps-as ~ audiocaps": 2}
    with open(run / "metrics.csv", newline="") as f:
        assert np.isfinite(float(next(csv.DictReader(f))["loss"]))

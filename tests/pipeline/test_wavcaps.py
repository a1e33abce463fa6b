"""WavCaps reader on a tiny tree in the release layout: per-source JSON metadata and real clips (tests/data/audio,
CC0 / CC BY-SA) copied in under WavCaps ids; one FreeSound clip is missing on purpose."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from audioret.pipeline.datasets import DatasetError, load_records
from audioret.pipeline.wavcaps import SPLIT_ROLES, load_wavcaps
from support import run_cli
from support.dataset_layouts import make_wavcaps

ALL_IDS = ["AudioSet_SL/Yabc-DEF_123_30.000.flac", "BBC_Sound_Effects/07070190.flac",
           "BBC_Sound_Effects/07070191.wav", "FreeSound/180.flac", "FreeSound/2219.flac", "SoundBible/2219.flac"]


def test_reads_every_source_with_unique_ids_and_lists_the_missing_clip(tmp_path: Path) -> None:
    make_wavcaps(tmp_path / "WavCaps")
    records, problems = load_records("wavcaps", tmp_path)  # aac-datasets root: the WavCaps folder's parent
    assert [r.clip_id for r in records] == ALL_IDS
    by_id = {r.clip_id: r for r in records}
    assert by_id["FreeSound/2219.flac"].captions == ["a snare is struck hard"]
    assert by_id["SoundBible/2219.flac"].captions == ["a crow caws"]
    assert all(r.split == "train" and r.path.is_file() for r in records)
    assert Path("FreeSound/180.flac").stem == "180"  # what an exclusion list of Freesound ids matches
    assert [(Path(p["file"]).name, p["error"]) for p in problems] == [("99999.flac", "audio file missing")]
    assert SPLIT_ROLES == {"train": "development"}


def test_subsets_pick_sources(tmp_path: Path) -> None:
    base = make_wavcaps(tmp_path / "WavCaps", bare_list=True)  # older bare-list metadata; root = WavCaps itself
    records, problems = load_records("wavcaps", base, subsets=["soundbible", "audioset_sl"])
    assert [r.clip_id for r in records] == ["AudioSet_SL/Yabc-DEF_123_30.000.flac", "SoundBible/2219.flac"]
    assert problems == []
    with pytest.raises(DatasetError, match="unknown wavcaps subset.*fsd.*choose from freesound"):
        load_records("wavcaps", base, subsets=["fsd"])
    with pytest.raises(DatasetError, match="dataset 'clotho' has no subsets"):
        load_records("clotho", base, subsets=["bbc"])
    with pytest.raises(DatasetError, match="only the split 'train'"):
        load_records("wavcaps", base, splits=["validation"])


def test_absent_sources_and_bad_metadata(tmp_path: Path) -> None:
    base = make_wavcaps(tmp_path / "WavCaps")
    shutil.rmtree(base / "Audio" / "BBC_Sound_Effects")  # metadata downloaded, archive not unpacked
    (base / "json_files" / "SoundBible" / "sb_final.json").unlink()
    records, problems = load_wavcaps(tmp_path)
    assert not any(r.clip_id.startswith(("BBC", "SoundBible")) for r in records) and len(records) == 3
    assert any("audio folder missing: all 2 BBC_Sound_Effects clips skipped" in p["error"] for p in problems)
    with pytest.raises(DatasetError, match=r"sb_final\.json: metadata file of --subsets soundbible not found"):
        load_wavcaps(tmp_path, subsets=["soundbible"])
    (base / "json_files" / "AudioSet_SL" / "as_final.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"as_final\.json: not a WavCaps metadata file"):
        load_wavcaps(tmp_path)
    with pytest.raises(DatasetError, match="no json_files/ folder"):
        load_wavcaps(tmp_path / "WavCaps" / "Audio")


def test_prep_audio_and_captions_cli(tmp_path: Path) -> None:
    """The real CLI: all sources → exit 3 naming the missing clip; --subsets → a clean cache; captions too."""
    from audioret.cache.audio_shards import AudioCache
    from audioret.cache.caption_shards import CaptionCache

    make_wavcaps(tmp_path / "data" / "WavCaps")
    common = ["--dataset", "wavcaps", "--root", tmp_path / "data", "--cache", tmp_path / "cache"]
    proc = run_cli("prep", "audio", *common, "--workers", "1", "--no-progress")
    assert proc.returncode == 3, proc.stderr
    assert "99999.flac: audio file missing" in proc.stderr
    failures = Path(proc.stdout.strip()) / "failures.jsonl"
    assert "99999.flac" in failures.read_text()
    assert sorted(AudioCache(proc.stdout.strip()).clip_ids) == ALL_IDS

    picked = ["--subsets", "bbc,soundbible", "--name", "wc_small"]
    proc = run_cli("prep", "audio", *common, *picked, "--workers", "1", "--no-progress", check=True)
    audio = AudioCache(proc.stdout.strip())
    assert audio.clip_ids == ["BBC_Sound_Effects/07070190.flac", "BBC_Sound_Effects/07070191.wav",
                              "SoundBible/2219.flac"] and set(audio.splits) == {"train"}
    proc = run_cli("prep", "captions", *common, *picked, "--translator", "none", "--no-progress", check=True)
    captions = CaptionCache(proc.stdout.strip())
    assert captions.clip_ids == audio.clip_ids
    assert captions.captions("SoundBible/2219.flac") == ["a crow caws"]

    bad = run_cli("prep", "captions", *common, "--subsets", "freesound,vggsound", "--translator", "none")
    assert bad.returncode == 2 and "unknown wavcaps subset(s) vggsound" in bad.stderr

"""AudioCaps reader on tiny real WAV/FLAC files (FSDD digits, CC BY-SA) renamed to AudioCaps clip names."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import soundfile as sf

from audioret.pipeline.audiocaps import SPLIT_ROLES, load_audiocaps
from audioret.pipeline.datasets import DatasetError, load_records
from support import cli_env
from support.dataset_layouts import SOURCES, make_audiocaps, write_audiocaps_csv


def test_simple_layout_groups_captions_and_reports_missing(tmp_path: Path) -> None:
    root = make_audiocaps(tmp_path, tmp_path, tmp_path / "audio")
    records, problems = load_records("audiocaps", root)
    by_id = {r.clip_id: r for r in records}
    assert sorted(by_id) == ["aaaaaaaaaaa_30.wav", "bbbbbbbbbbb_0.wav", "ccccccccccc_10.wav", "ddddddddddd_60.wav"]
    assert by_id["aaaaaaaaaaa_30.wav"].captions == ["a dog barks"] and by_id["aaaaaaaaaaa_30.wav"].split == "train"
    assert by_id["ccccccccccc_10.wav"].captions == ["one", "two", "three", "four", "five"]  # by audiocap_id
    assert by_id["ccccccccccc_10.wav"].split == "val"
    assert all(r.path.is_file() and sf.info(r.path).frames > 0 for r in records)
    assert len(problems) == 1 and problems[0]["split"] == "test"
    assert "eeeeeeeeeee_20" in problems[0]["file"] and "missing" in problems[0]["error"]
    json.dumps(problems)  # problems go to failures.jsonl / the manifest as they are


def test_aac_datasets_layout_with_flac_and_float_start_times(tmp_path: Path) -> None:
    base = tmp_path / "AUDIOCAPS"
    make_audiocaps(tmp_path, base / "csv_files_v1", base / "audio_32000Hz", ext="flac", start_suffix=".0")
    (base / "audio_44100Hz" / "train").mkdir(parents=True)  # another rate present: the 32 kHz copy wins
    records, problems = load_audiocaps(tmp_path, None, ["train", "val"])
    assert [r.clip_id for r in records] == ["aaaaaaaaaaa_30.flac", "bbbbbbbbbbb_0.flac", "ccccccccccc_10.flac"]
    assert all("audio_32000Hz" in str(r.path) for r in records)
    assert problems == []
    # The AUDIOCAPS folder itself as root works too.
    assert len(load_audiocaps(base, None, ["test"])[0]) == 1


def test_split_filter_and_roles(tmp_path: Path) -> None:
    root = make_audiocaps(tmp_path, tmp_path, tmp_path / "audio")
    records, problems = load_records("audiocaps", root, splits=["val"])
    assert [r.split for r in records] == ["val"] and problems == []
    assert SPLIT_ROLES == {"train": "development", "val": "validation", "test": "evaluation"}
    with pytest.raises(DatasetError, match="unknown AudioCaps split"):
        load_records("audiocaps", root, splits=["development"])


def test_bad_inputs_raise_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no AudioCaps"):
        load_audiocaps(tmp_path, None, None)
    write_audiocaps_csv(tmp_path / "train.csv", [])
    (tmp_path / "train.csv").write_text("youtube_id,caption\nx,y\n")
    with pytest.raises(DatasetError, match=r"train\.csv: missing column\(s\) audiocap_id, start_time"):
        load_audiocaps(tmp_path, None, ["train"])


def test_manifest_option_reads_a_generic_manifest(tmp_path: Path) -> None:
    data, sr = sf.read(SOURCES[0])
    sf.write(tmp_path / "x.wav", data, sr)
    (tmp_path / "m.csv").write_text("split,file_name,caption_1\ntrain,x.wav,a digit\n")
    records, _ = load_audiocaps(tmp_path, tmp_path / "m.csv", None)
    assert [(r.clip_id, r.split, r.captions) for r in records] == [("x.wav", "train", ["a digit"])]


def test_prep_audio_cli_skips_missing_clips_and_exits_3(tmp_path: Path) -> None:
    """Real `prep audio` subprocess (with the reader imported, as pipeline/datasets.py does in the package)."""
    import subprocess

    root = make_audiocaps(tmp_path / "ac", tmp_path / "ac", tmp_path / "ac" / "audio")
    code = "import sys, audioret.pipeline.audiocaps; from audioret.cli import main; sys.argv[0] = 'audioret'; main()"
    proc = subprocess.run([sys.executable, "-c", code, "prep", "audio", "--dataset", "audiocaps", "--root",
                           str(root), "--cache", str(tmp_path / "cache")], capture_output=True, text=True,
                          timeout=240, env=cli_env())
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "eeeeeeeeeee_20" in proc.stdout + proc.stderr + "".join(
        p.read_text() for p in (tmp_path / "cache").rglob("*.json*"))
    from audioret.cache.audio_shards import AudioCache

    cache = AudioCache.open(tmp_path / "cache", name="audiocaps")
    assert sorted(cache.clip_ids) == ["aaaaaaaaaaa_30.wav", "bbbbbbbbbbb_0.wav", "ccccccccccc_10.wav",
                                      "ddddddddddd_60.wav"]
    assert sorted(set(cache.splits)) == ["test", "train", "val"]

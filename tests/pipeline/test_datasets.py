"""Dataset readers on real files: the Clotho v2.1 layout and CSV/JSONL manifests, awkward names included."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audioret.pipeline.datasets import (
    DATASET_KINDS,
    ClipRecord,
    DatasetError,
    load_records,
    register_dataset,
    split_list,
)
from support import AUDIO, write_csv

CAT = AUDIO / "animals_cc0" / "cat.mp3"
AMEN = AUDIO / "sonic_pi_cc0" / "loop_amen.flac"  # stereo
ZERO = AUDIO / "fsdd_ccbysa" / "0_george_0.wav"  # 8 kHz


@pytest.fixture
def clotho(tmp_path: Path) -> Path:
    """A miniature Clotho v2.1 tree: names with spaces, commas and non-ASCII; one caption row without audio."""
    for split in ("development", "validation", "evaluation"):
        (tmp_path / split).mkdir()
    shutil.copy(CAT, tmp_path / "development" / "Forest ambience, birds.mp3")
    shutil.copy(AMEN, tmp_path / "development" / "Grüße aus Köln.flac")
    shutil.copy(ZERO, tmp_path / "validation" / "zero one.wav")
    caps = ["c1", "c2", "c3", "c4", "c5"]
    header = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
    write_csv(tmp_path / "clotho_captions_development.csv", header,
              [["Forest ambience, birds.mp3", *caps], ["Grüße aus Köln.flac", "drums, fast", *caps[1:]]])
    write_csv(tmp_path / "clotho_captions_validation.csv", header,
              [["zero one.wav", *caps], ["gone.wav", *caps]])
    return tmp_path  # no evaluation CSV: a split without one is simply absent (a header-only one is an error)


def test_clotho_layout_reads_awkward_names_and_reports_missing_audio(clotho: Path) -> None:
    records, problems = load_records("clotho", clotho)
    assert [r.clip_id for r in records] == ["Forest ambience, birds.mp3", "Grüße aus Köln.flac", "zero one.wav"]
    assert [r.split for r in records] == ["development", "development", "validation"]
    assert all(r.path.is_file() for r in records)
    assert records[1].captions == ["drums, fast", "c2", "c3", "c4", "c5"]
    assert problems == [{"file": str(clotho / "validation" / "gone.wav"), "split": "validation",
                         "error": "audio file missing"}]


def test_clotho_splits_filter_and_missing_split_csv(clotho: Path) -> None:
    records, problems = load_records("clotho", clotho, splits=["validation"])
    assert [r.clip_id for r in records] == ["zero one.wav"] and len(problems) == 1
    with pytest.raises(DatasetError, match="clotho_captions_"):
        load_records("clotho", clotho, splits=["evaluation"])
    with pytest.raises(DatasetError, match="not a directory"):
        load_records("clotho", clotho / "nope")


def test_manifest_csv_relative_absolute_and_many_captions(tmp_path: Path) -> None:
    (tmp_path / "sub dir").mkdir()
    shutil.copy(CAT, tmp_path / "sub dir" / "cat, meow é.mp3")
    header = ["split", "file_name"] + [f"caption_{i}" for i in range(1, 12)]
    caps = [f"cap {i}" for i in range(1, 12)]
    m = write_csv(tmp_path / "clips.csv", header, [
        ["train", "sub dir/cat, meow é.mp3", *caps],
        ["test", str(AMEN), "only one", *[""] * 10],
        ["test", "missing.wav", "x", *[""] * 10],
        ["", "sub dir/cat, meow é.mp3", "no split", *[""] * 10],
    ])
    records, problems = load_records("manifest", tmp_path / "elsewhere", manifest=m)
    assert [r.clip_id for r in records] == [str(AMEN), "sub dir/cat, meow é.mp3"]
    assert records[1].path == tmp_path / "sub dir" / "cat, meow é.mp3"
    assert records[1].captions == caps  # numeric order: caption_10, caption_11 come last
    assert records[0].captions == ["only one"]
    assert [p["error"] for p in problems] == ["audio file missing", "row needs both split and file_name"]
    assert problems[1]["file"] == f"{m}:5"


def test_manifest_jsonl_with_bad_lines_and_duplicates(tmp_path: Path) -> None:
    shutil.copy(ZERO, tmp_path / "zéro.wav")
    lines = [
        {"split": "val", "file_name": "zéro.wav", "caption_1": "a digit", "caption_2": "spoken zero"},
        {"split": "train", "file_name": str(CAT), "captions": ["a cat", "meowing"]},
        {"split": "train", "file_name": "zéro.wav", "caption_1": "duplicate"},
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n{broken\n\n[1]\n",
                 encoding="utf-8")
    records, problems = load_records("manifest", tmp_path, manifest=m)
    assert [(r.clip_id, r.split, r.captions) for r in records] == [
        (str(CAT), "train", ["a cat", "meowing"]), ("zéro.wav", "val", ["a digit", "spoken zero"])]
    errors = [p["error"] for p in problems]
    assert errors[0].startswith("invalid JSON") and errors[1] == "line is not a JSON object"
    assert "duplicate clip id 'zéro.wav'" in errors[2]
    only_train, _ = load_records("manifest", tmp_path, manifest=m, splits=["train"])
    assert [r.clip_id for r in only_train] == [str(CAT)]


def test_manifest_default_name_and_header_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no --manifest given"):
        load_records("manifest", tmp_path)
    write_csv(tmp_path / "manifest.csv", ["file_name", "caption_1"], [["a.wav", "x"]])
    with pytest.raises(DatasetError, match="no split column"):
        load_records("manifest", tmp_path)
    (tmp_path / "bad.csv").write_bytes(b"split,file_name\n\xff\xfe,x\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_records("manifest", tmp_path, manifest=tmp_path / "bad.csv")


def test_register_dataset_plugs_in_a_reader(tmp_path: Path) -> None:
    def reader(root: Path, manifest: Path | None, splits: list[str] | None):
        return [ClipRecord("b", "test", ZERO, []), ClipRecord("a", "train", CAT, ["x"])], []

    register_dataset("toy-test-kind", reader)
    try:
        records, _ = load_records("toy-test-kind", tmp_path)
        assert [r.clip_id for r in records] == ["a", "b"]
    finally:
        DATASET_KINDS.pop("toy-test-kind")
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        load_records("toy-test-kind", tmp_path)


def test_split_list() -> None:
    assert split_list("development, validation") == ["development", "validation"]
    assert split_list("") is None and split_list(None) is None


def test_names_stored_in_another_unicode_form_are_found(tmp_path: Path) -> None:
    """A Clotho zip unpacked on macOS holds NFD names; the CSVs (and manifests typed by people) hold NFC."""
    import unicodedata

    nfc, nfd = (unicodedata.normalize(f, "Café crème, Über.wav") for f in ("NFC", "NFD"))
    (tmp_path / "development").mkdir()
    shutil.copy(ZERO, tmp_path / "development" / nfd)
    folder = tmp_path / unicodedata.normalize("NFD", "Géraldine")  # NFD folder, NFC file inside
    folder.mkdir()
    shutil.copy(ZERO, folder / nfc)
    write_csv(tmp_path / "clotho_captions_development.csv", ["file_name"] + [f"caption_{i}" for i in range(1, 6)],
              [[nfc, "a", "b", "c", "d", "e"]])
    records, problems = load_records("clotho", tmp_path)
    assert problems == [] and [r.clip_id for r in records] == [nfc]  # the id stays as the CSV writes it
    assert records[0].path.is_file()
    manifest = write_csv(tmp_path / "m.csv", ["split", "file_name", "caption_1"],
                         [["train", f"{unicodedata.normalize('NFC', 'Géraldine')}/{nfd}", "x"],
                          ["train", "Géraldine/absent é.wav", "y"]])
    records, problems = load_records("manifest", tmp_path, manifest)
    assert [r.path.is_file() for r in records] == [True]
    assert [p["error"] for p in problems] == ["audio file missing"]


def test_captions_are_kept_verbatim_blank_ones_dropped(tmp_path: Path) -> None:
    """Surrounding spaces are part of a caption's identity (the DCASE scorer looks captions up by exact text)."""
    (tmp_path / "evaluation").mkdir()
    shutil.copy(CAT, tmp_path / "evaluation" / "cat.mp3")
    write_csv(tmp_path / "clotho_captions_evaluation.csv", ["file_name"] + [f"caption_{i}" for i in range(1, 6)],
              [["cat.mp3", "A cat meows. ", "  leading", "   ", "", "plain"]])
    records, _ = load_records("clotho", tmp_path)
    assert records[0].captions == ["A cat meows. ", "  leading", "plain"]
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"split": "test", "file_name": str(CAT), "captions": [" a ", " ", "b  "]}) + "\n")
    assert load_records("manifest", tmp_path, manifest=m)[0][0].captions == [" a ", "b  "]

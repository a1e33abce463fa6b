"""Exclusion lists: the file forms (plain list, DCASE CSV, WavCaps JSON), the matching rules, and `prep audio` /
`prep captions --exclude` end to end on real audio (removed before caching, content in the key, reported)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audioret.cache.audio_shards import AudioCache
from audioret.cache.caption_shards import CaptionCache
from audioret.cache.manifest import Manifest
from audioret.pipeline.datasets import ClipRecord, DatasetError, problem
from audioret.pipeline.exclude import apply_exclusions, read_exclusion_list
from support import AUDIO, run_cli
from support.prep import write_manifest


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_list_forms(tmp_path: Path) -> None:
    plain = _write(tmp_path / "list.txt", "# overlapping sounds\n12345\n\n  rain.wav  \ncafe\u0301\n")
    assert read_exclusion_list(plain).entries == {"12345", "rain.wav", "caf\u00e9"}  # stripped, NFC
    # The DCASE 2025 baseline's resources/dcase2025_task6_excluded_freesound_ids.csv: a sound_id column.
    dcase = _write(tmp_path / "excluded.csv", "file_name,sound_id\nx.wav,111\ny.wav,222\n")
    assert read_exclusion_list(dcase).entries == {"111", "222"}
    first = _write(tmp_path / "names.csv", "name,note\n\"a, b.wav\",1\nc.wav,2\n")
    assert read_exclusion_list(first).entries == {"a, b.wav", "c.wav"}
    wavcaps = _write(tmp_path / "blacklist.json", json.dumps({"AudioSet": ["Y0a1b2.wav"], "FreeSound": [42, "7"]}))
    assert read_exclusion_list(wavcaps).entries == {"Y0a1b2.wav", "42", "7"}
    assert read_exclusion_list(_write(tmp_path / "l.json", "[1, 2]")).entries == {"1", "2"}
    # The hash is of the normalised content: same entries in another order or spelling → same key input.
    again = _write(tmp_path / "again.txt", "rain.wav\ncaf\u00e9\n12345\n")
    assert read_exclusion_list(again).sha256 == read_exclusion_list(plain).sha256


@pytest.mark.parametrize("name,text,message", [
    ("bad.json", "{not json", "invalid JSON"),
    ("bad2.json", '{"a": "not a list"}', "expected a JSON list"),
    ("empty.csv", "", "empty CSV"),
])
def test_bad_list_is_one_line_error_naming_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message) as err:
        read_exclusion_list(_write(tmp_path / name, text))
    assert str(err.value).startswith(str(tmp_path / name)) and "\n" not in str(err.value)


def test_matching_by_id_name_and_stem(tmp_path: Path) -> None:
    recs = [ClipRecord(cid, "development", tmp_path / cid) for cid in
            ("12345.wav", "sub/rain.wav", "caf\u00e9.flac", "123456.wav", "keep.wav")]
    problems = [problem(tmp_path / "development" / "gone.wav", "development", "audio file missing"),
                problem(tmp_path / "other.wav", "development", "audio file missing")]
    exclusion = read_exclusion_list(_write(tmp_path / "l.txt", "12345\nrain\ncafe\u0301.flac\ngone.wav\nnope\n"))
    kept, kept_problems, report = apply_exclusions(recs, problems, exclusion)
    assert [r.clip_id for r in kept] == ["123456.wav", "keep.wav"]  # an id matches the whole stem only
    assert [p["file"] for p in kept_problems] == [str(tmp_path / "other.wav")]  # a listed missing file is no problem
    assert report.removed == 4 and report.not_found == ["nope"]
    assert report.to_dict()["n_not_found"] == 1 and "e.g. nope" in report.summary()


def test_freesound_ids_do_not_cross_wavcaps_sources(tmp_path: Path) -> None:
    """WavCaps: SoundBible/BBC ids are small integers too; a Freesound id list must only remove FreeSound clips."""
    ids = ("FreeSound/2219.flac", "SoundBible/2219.flac", "BBC_Sound_Effects/2219.wav", "AudioSet_SL/2219.flac",
           "mine/2219.flac")
    recs = [ClipRecord(cid, "train", tmp_path / cid) for cid in ids]
    kept, _, report = apply_exclusions(recs, [], read_exclusion_list(_write(tmp_path / "ids.csv", "sound_id\n2219\n")))
    assert [r.clip_id for r in kept] == ["SoundBible/2219.flac", "BBC_Sound_Effects/2219.wav", "AudioSet_SL/2219.flac"]
    assert report.removed == 2 and report.not_found == []
    full = read_exclusion_list(_write(tmp_path / "full.txt", "SoundBible/2219.flac\n"))
    assert [r.clip_id for r in apply_exclusions(recs, [], full)[0]] == [c for c in ids if c != "SoundBible/2219.flac"]


def test_missing_clips_are_matched_by_the_id_they_would_have_had(tmp_path: Path) -> None:
    """A listed clip whose audio is missing is removed, not reported, by its would-be id: a SoundBible file is not
    a Freesound id, and AudioCaps' longer 'audio file missing (...)' message counts as missing too."""
    problems = [problem(tmp_path / "SoundBible" / "77.flac", "train", "audio file missing", "SoundBible/77.flac"),
                problem(tmp_path / "FreeSound" / "77.flac", "train", "audio file missing", "FreeSound/77.flac"),
                problem(tmp_path / "train" / "YT1_30.flac", "train",
                        "audio file missing (YT1_30.{flac,wav,ogg,mp3}; YouTube takedown?)", "YT1_30.flac")]
    exclusion = read_exclusion_list(_write(tmp_path / "l.txt", "77\nYT1_30\n"))
    _, kept_problems, report = apply_exclusions([], problems, exclusion)
    assert [p["clip_id"] for p in kept_problems] == ["SoundBible/77.flac"]
    assert report.removed == 2 and report.not_found == []


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Real clips under Freesound-id and title names, plus a listed clip whose audio is missing."""
    folder = tmp_path / "data"
    folder.mkdir()
    sources = sorted((AUDIO / "animals_cc0").glob("*.mp3"))[:4]
    names = ["12345.mp3", "cow.mp3", "dog.mp3", "rooster.mp3"]
    for src, name in zip(sources, names, strict=False):
        shutil.copy(src, folder / name)
    return write_manifest(folder / "manifest.csv", [folder / n for n in names] + ["gone.mp3"])


def _prep(kind: str, manifest: Path, cache: Path, *extra) -> tuple[int, str, Path]:
    proc = run_cli("prep", kind, "--dataset", "manifest", "--manifest", manifest, "--cache", cache,
                   *(["--workers", "1", "--no-progress"] if kind == "audio" else ["--translator", "none"]), *extra)
    return proc.returncode, proc.stderr, Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None


def test_prep_audio_and_captions_exclude(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ids = _write(tmp_path / "excluded.csv", "sound_id\n12345\ndog\ngone.mp3\n99999\n")  # DCASE CSV form
    code, err, audio_dir = _prep("audio", dataset, cache, "--exclude", ids)
    assert code == 0, err  # the missing gone.mp3 is listed, so it is not a problem row
    assert "3 clip(s) removed; 1 of 4 entries matched no clip (e.g. 99999)" in err
    assert AudioCache(audio_dir).clip_ids == ["cow.mp3", "rooster.mp3"]
    recorded = Manifest.read(audio_dir).extra["exclude"]
    assert recorded["removed"] == 3 and recorded["not_found"] == ["99999"] and recorded["file"] == str(ids)

    code, err, captions_dir = _prep("captions", dataset, cache, "--exclude", ids)
    assert code == 0 and "3 clip(s) removed" in err, err
    assert CaptionCache(captions_dir).clip_ids == ["cow.mp3", "rooster.mp3"]  # the same clips as the audio cache

    code, err, rerun = _prep("audio", dataset, cache, "--exclude", ids)
    assert (code, rerun) == (0, audio_dir) and "nothing to do" in err and "3 clip(s) removed" in err

    # The list's content is in the key: another content at the same path, or no list, is another cache.
    _write(ids, "sound_id\n12345\ndog\ngone.mp3\n")
    code, err, other = _prep("audio", dataset, cache, "--exclude", ids)
    assert code == 0 and other != audio_dir and AudioCache(other).clip_ids == ["cow.mp3", "rooster.mp3"]
    code, err, plain = _prep("audio", dataset, cache)
    assert code == 3 and plain not in (audio_dir, other) and "gone.mp3" in err  # missing audio is a problem again
    assert "exclude" not in Manifest.read(plain).extra


def test_prep_exclude_unreadable_list_is_one_line_error(dataset: Path, tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.json", "{oops")
    code, err, _ = _prep("audio", dataset, tmp_path / "cache", "--exclude", bad)
    assert code == 1 and err.strip().splitlines() == [f"error: {bad}: invalid JSON (Expecting property name "
                                                      "enclosed in double quotes at line 1); expected a list of "
                                                      "names or an object of lists"]
    assert not (tmp_path / "cache").exists()  # nothing cached from a list that could not be read

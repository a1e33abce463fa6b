"""Empty or degenerate inputs are errors with one line saying so, never a "successful" run over nothing:
0-byte / header-only CSVs, a dataset whose every file fails to decode, a training split of one clip, captions
that normalise to "", an empty retrieve query. Real files and the real CLI in subprocesses."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audioret.cache.manifest import Manifest
from audioret.pipeline.datasets import DatasetError, load_records
from support import AUDIO, run_cli
from support.demo import minilm_path
from support.prep import write_manifest

WAVS = sorted((AUDIO / "fsdd_ccbysa").glob("*.wav"))  # real 8 kHz speech, 0.3-0.6 s: cheap to prep


@pytest.mark.parametrize("content, message", [
    ("", "file is empty (no header line)"),
    ("\n", "file is empty (no header line)"),
    ("file_name,caption_1,caption_2\n", "no rows below the header (file_name, caption_1, caption_2)"),
])
def test_empty_or_header_only_clotho_csv_says_so(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "development").mkdir()
    (tmp_path / "clotho_captions_development.csv").write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError) as exc:
        load_records("clotho", tmp_path)
    assert str(exc.value).startswith(f"{tmp_path / 'clotho_captions_development.csv'}: {message}")


@pytest.mark.parametrize("name, content, message", [
    ("m.csv", "", "file is empty"),
    ("m.csv", "split,file_name,caption_1\n", "no rows below the header"),
    ("m.jsonl", "", "file is empty (no JSON lines)"),
    ("m.jsonl", "\n\n", "file is empty (no JSON lines)"),
])
def test_empty_manifest_says_so(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=f"{name}: {message}".replace("(", r"\(").replace(")", r"\)")):
        load_records("manifest", tmp_path, tmp_path / name)


@pytest.mark.parametrize("content, message", [
    ("", "file is empty"), ("audiocap_id,youtube_id,start_time,caption\n", "no rows below the header")])
def test_empty_audiocaps_csv_says_so(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "train.csv").write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"train\.csv: {message}"):
        load_records("audiocaps", tmp_path, splits=["train"])


def test_zero_byte_manifest_through_the_cli_is_an_empty_file_error(tmp_path: Path) -> None:
    (tmp_path / "clips.csv").write_bytes(b"")
    for stage in ("audio", "captions"):
        proc = run_cli("prep", stage, "--dataset", "manifest", "--manifest", tmp_path / "clips.csv", "--cache",
                       tmp_path / "cache", "--no-progress")
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip() == f"error: {tmp_path / 'clips.csv'}: file is empty (no header line); expected " \
                                      "a CSV with a header and one row per clip"


def test_every_file_failing_is_exit_1_and_leaves_no_usable_cache(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "text.wav").write_text("this is not audio\n")
    (d / "empty.flac").write_bytes(b"")
    manifest = write_manifest(d / "clips.csv", [d / "text.wav", d / "empty.flac"])
    args = ("prep", "audio", "--dataset", "manifest", "--manifest", manifest, "--cache", tmp_path / "cache",
            "--no-progress", "--workers", "1")
    for attempt in range(2):  # the re-run must not take the first run's cache for a finished one
        proc = run_cli(*args)
        assert proc.returncode == 1, (attempt, proc.stderr)
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {manifest}: none of the 2 clip(s) could be decoded, nothing was cached")
        assert proc.stdout == ""
    (cache_dir,) = (tmp_path / "cache" / "audio").iterdir()
    assert not Manifest.read(cache_dir).complete
    failures = [json.loads(x) for x in (cache_dir / "failures.jsonl").read_text("utf-8").splitlines()]
    assert sorted(Path(f["file"]).name for f in failures) == ["empty.flac", "text.wav"]
    assert f"see {cache_dir / 'failures.jsonl'}" in last
    # Training finds no complete audio cache (it would have found the 0-clip one before).
    (tmp_path / "run").mkdir()
    train = run_cli("train", "--cache", tmp_path / "cache", "--out", tmp_path / "run" / "r", "--no-progress")
    assert train.returncode == 1 and "no complete audio cache" in train.stderr, train.stderr


def _manifest_with_captions(path: Path, rows: list[tuple[str, Path, list[str]]]) -> Path:
    n = max(len(c) for _, _, c in rows)
    lines = ["split,file_name," + ",".join(f"caption_{i}" for i in range(1, n + 1))]
    for split, wav, caps in rows:
        shutil.copy(wav, path.parent / wav.name)
        lines.append(",".join([split, wav.name, *(f'"{c}"' for c in caps)] + [""] * (n - len(caps))))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_captions_that_normalise_to_nothing_are_warned_dropped_and_counted(tmp_path: Path) -> None:
    from audioret.cache.caption_shards import CaptionCache

    (tmp_path / "data").mkdir()
    manifest = _manifest_with_captions(tmp_path / "data" / "clips.csv", [
        ("development", WAVS[0], ["a man says zero", "!!!", "..."]),
        ("development", WAVS[1], ["a man says one", "a voice"]),
    ])
    proc = run_cli("prep", "captions", "--dataset", "manifest", "--manifest", manifest, "--cache",
                   tmp_path / "cache", "--no-progress")
    assert proc.returncode == 3, proc.stderr  # inputs were dropped: partial, listed in the report
    wav = tmp_path / "data" / WAVS[0].name
    assert f"warning: {wav}: caption 2 '!!!' is empty after normalisation (no letters or digits); dropped" \
        in proc.stderr
    assert f"warning: {wav}: caption 3 '...' is empty after normalisation" in proc.stderr
    assert "2 caption(s) dropped (empty after normalisation)" in proc.stderr
    assert "dataset row(s) skipped" not in proc.stderr
    cache_dir = Path(proc.stdout.strip().splitlines()[-1])
    report = [json.loads(x) for x in (cache_dir / "failures.jsonl").read_text("utf-8").splitlines()]
    assert [(r["clip_id"], r["error"].split(" is ")[0]) for r in report] == [
        (WAVS[0].name, "caption 2 '!!!'"), (WAVS[0].name, "caption 3 '...'")]
    cc = CaptionCache.open(tmp_path / "cache")
    assert cc.captions(WAVS[0].name) == ["a man says zero"] and cc.raw(WAVS[0].name) == ["a man says zero"]
    assert cc.captions(WAVS[1].name) == ["a man says one", "a voice"]


def test_training_split_of_one_clip_is_a_data_error_naming_split_and_cache(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    manifest = _manifest_with_captions(tmp_path / "data" / "clips.csv", [
        ("development", WAVS[0], ["a man says zero", "someone says a digit"]),
        ("validation", WAVS[1], ["a man says one"]), ("validation", WAVS[2], ["a man says two"]),
    ])
    cache = tmp_path / "cache"
    for stage in ("audio", "captions"):
        run_cli("prep", stage, "--dataset", "manifest", "--manifest", manifest, "--cache", cache, "--no-progress",
                check=True)
    (audio_dir,) = (cache / "audio").iterdir()
    proc = run_cli("train", "--cache", cache, "--out", tmp_path / "run", "--no-progress",
                   "--set", f"text_model={minilm_path()}", "--set", "device=cpu")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {audio_dir}: split 'development' has 1 clip(s) with captions and audio; training needs at "
        "least 2 (check the split's CSV and failures.jsonl)")


@pytest.mark.parametrize("query", ["", "   ", "?!", "..."])
def test_retrieve_with_an_empty_query_is_a_usage_error(tmp_path: Path, query: str) -> None:
    proc = run_cli("retrieve", tmp_path, "a dog barks", query)
    assert proc.returncode == 2, proc.stderr
    assert f"query {query!r} is empty after normalisation" in proc.stderr


def test_prep_captions_with_no_usable_clip_is_exit_1(tmp_path: Path) -> None:
    manifest = tmp_path / "clips.csv"
    manifest.write_text("split,file_name,caption_1\ndevelopment,gone.wav,a dog barks\n", encoding="utf-8")
    proc = run_cli("prep", "captions", "--dataset", "manifest", "--manifest", manifest, "--cache", tmp_path / "c",
                   "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == (f"error: {manifest}: no usable clips (1 problem rows; e.g. {tmp_path / 'gone.wav'}: "
                                   "audio file missing)")
    assert not (tmp_path / "c" / "captions").exists()

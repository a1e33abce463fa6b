"""`audioret predict` end to end with a real (tiny, 1-epoch) trained run on a folder of real audio holding a corrupt
file: the submission's form and ranking, verbatim captions, the failure report and exit 3, the keyed folder cache
(a second predict, and `retrieve --audio-dir`, decode nothing), and one-line errors for bad query files."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from support import AUDIO, run_cli

NAMES = ["cat.mp3", "cow.mp3", "dog.mp3", "horse.mp3", "rooster.mp3", "sheep.mp3", "sub/0_george_0.wav"]  # ranked
QUERIES = ["A dog barks.", "  a rooster crows, then a cow moos  ", "Someone says a digit: \"zero\"!"]


@pytest.fixture(scope="module")
def run(demo_run) -> Path:
    """The shared 1-epoch demo run (tests/cli/conftest.py); keep_last: `--checkpoint last` can load it."""
    return demo_run


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """6 MP3s, a WAV in a subfolder, a text file named .wav (corrupt), and files the folder kind skips."""
    root = tmp_path / "eval_audio"
    (root / "sub").mkdir(parents=True)
    for mp3 in sorted((AUDIO / "animals_cc0").glob("*.mp3")):
        shutil.copy(mp3, root / mp3.name)
    shutil.copy(AUDIO / "fsdd_ccbysa" / "0_george_0.wav", root / "sub" / "0_george_0.wav")
    (root / "broken.wav").write_text("this is not audio\n")
    (root / "notes.txt").write_text("not an audio suffix: ignored\n")
    (root / "._cow.mp3").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork: hidden, ignored
    return root


def _queries(path: Path, rows: list[str], header: str = "caption") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([header, "file_name"])
        w.writerows([q, f"x{i}.wav"] for i, q in enumerate(rows))
    return path


def _expected_top(run_dir: Path, folder: Path, names: list[str], queries: list[str], k: int) -> list[list[str]]:
    """The ranking computed independently: each file's log-mel straight from the decoder (stored as float16 like
    the cache), the run's encoders, then score descending, ties by name order."""
    from audioret.pipeline.audio_io import file_log_mel
    from audioret.pipeline.text import normalise_caption
    from audioret.trainer.evaluate import LoadedRun

    loaded = LoadedRun(run_dir, "best", "cpu")
    feats = [file_log_mel(folder / n).astype(np.float16) for n in names]
    sim = (loaded.embed_texts([normalise_caption(q) for q in queries]) @ loaded.embed_features(feats).T).numpy()
    return [[names[j] for j in sorted(range(len(names)), key=lambda j: (-row[j], j))[:k]] for row in sim]


def _shard_mtimes(cache: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(cache.rglob("*.h5"))}


def test_predict_ranks_folder_lists_corrupt_file_and_reuses_cache(run: Path, folder: Path, tmp_path: Path) -> None:
    queries, cache, out = _queries(tmp_path / "queries.csv", QUERIES), tmp_path / "cache", tmp_path / "sub.csv"
    proc = run_cli("predict", run, "--audio-dir", folder, "--queries", queries, "--out", out, "--cache", cache,
                   "--workers", "1", "--no-progress")
    assert proc.returncode == 3, proc.stderr
    assert "features of 7 file(s)" in proc.stderr and "(7 decoded now, 1 failed)" in proc.stderr
    assert f"{folder / 'broken.wav'}: cannot decode" in proc.stderr
    report = tmp_path / "sub.failures.jsonl"
    failed = [json.loads(line) for line in report.read_text().splitlines()]
    assert [f["file"] for f in failed] == [str(folder / "broken.wav")] and f"see {report}" in proc.stderr

    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["caption"] + [f"fname_{i}" for i in range(1, 8)]  # N = min(--top 16, 7 files)
    assert [r[0] for r in rows[1:]] == QUERIES  # verbatim: spaces, punctuation, quotes kept
    assert [r[1:] for r in rows[1:]] == _expected_top(run, folder, NAMES, QUERIES, 7)

    # A second predict (another checkpoint of the run, another output) reads the cache: nothing decoded, no shard
    # rewritten; the failure is still reported.
    before = _shard_mtimes(cache)
    again = run_cli("predict", run, "--audio-dir", folder, "--queries", queries, "--out", tmp_path / "b.csv",
                    "--cache", cache, "--checkpoint", "last", "--top", "3", "--no-progress")
    assert again.returncode == 3 and "(0 decoded now, 1 failed)" in again.stderr, again.stderr
    assert _shard_mtimes(cache) == before and before
    assert (tmp_path / "b.failures.jsonl").exists()
    with open(tmp_path / "b.csv", newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["caption", "fname_1", "fname_2", "fname_3"]


@pytest.mark.slow
def test_retrieve_shares_the_folder_cache_and_a_clean_folder_exits_0(run: Path, folder: Path, tmp_path: Path) -> None:
    queries, cache, out = _queries(tmp_path / "queries.csv", QUERIES), tmp_path / "cache", tmp_path / "sub.csv"
    report = tmp_path / "sub.failures.jsonl"
    first = run_cli("predict", run, "--audio-dir", folder, "--queries", queries, "--out", out, "--cache", cache,
                    "--workers", "1", "--no-progress")
    assert first.returncode == 3 and report.exists(), first.stderr
    before = _shard_mtimes(cache)

    # retrieve --audio-dir goes through the same folder cache.
    ret = run_cli("retrieve", run, "a dog barks", "--audio-dir", folder, "--cache", cache, "-k", "7", "--json")
    assert ret.returncode == 3 and "(0 decoded now, 1 failed)" in ret.stderr, ret.stderr
    assert sorted(r["clip"] for r in json.loads(ret.stdout)[0]["results"]) == NAMES
    assert _shard_mtimes(cache) == before

    # Once the corrupt file is gone the folder is another cache (its key covers the file list), the exit is 0 and
    # the stale failure report of this --out is removed; the 7 good files' features are copied, not decoded.
    (folder / "broken.wav").unlink()
    clean = run_cli("predict", run, "--audio-dir", folder, "--queries", queries, "--out", out, "--cache", cache,
                    "--workers", "1", "--no-progress")
    assert clean.returncode == 0, clean.stderr
    assert "(0 decoded now, 7 unchanged ones copied from an older cache, 0 failed)" in clean.stderr
    assert not report.exists()


def test_predict_after_one_file_changed_decodes_it_alone_and_embeds_long_clips_in_pieces(
        run: Path, folder: Path, tmp_path: Path) -> None:
    """A 40-s recording (real clips one after another) is embedded in two pieces whatever --batch-size says;
    touching one file of the folder decodes that file only (pipeline/feature_reuse.py)."""
    import soundfile as sf

    from audioret.pipeline.audio_io import load_mono

    mp3s = sorted((AUDIO / "animals_cc0").glob("*.mp3"))
    y = np.concatenate([load_mono(p, on_message=lambda m: None) for p in mp3s])
    sf.write(folder / "long.wav", np.tile(y, int(np.ceil(40 * 32000 / len(y))))[:40 * 32000], 32000)
    queries, cache = _queries(tmp_path / "queries.csv", QUERIES), tmp_path / "cache"
    args = ("predict", run, "--audio-dir", folder, "--queries", queries, "--cache", cache, "--no-progress")
    first = run_cli(*args, "--out", tmp_path / "a.csv", "--workers", "1")
    assert first.returncode == 3 and "(8 decoded now, 1 failed)" in first.stderr, first.stderr
    st = (folder / "cow.mp3").stat()
    os.utime(folder / "cow.mp3", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = run_cli(*args, "--out", tmp_path / "b.csv", "--batch-size", "1")
    assert second.returncode == 3, second.stderr
    assert "(1 decoded now, 7 unchanged ones copied from an older cache, 1 failed)" in second.stderr
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_the_library_returns_data_and_reports_through_its_callback(run: Path, folder: Path, tmp_path: Path,
                                                                   capfd) -> None:
    """audioret/retrieval.py (what `predict` and `retrieve` call) prints nothing itself: the progress lines reach
    the caller's `report`, the ranking and the failures come back as data."""
    from audioret.retrieval import EmptyQueryError, predict, retrieve

    lines: list[str] = []
    queries, cache = _queries(tmp_path / "queries.csv", QUERIES), tmp_path / "cache"
    done = predict(run, folder, queries, tmp_path / "sub.csv", top=3, cache_root=cache, workers=1, progress=False,
                   report=lines.append)
    assert (done.n_queries, done.n_files, done.top) == (3, 7, 3)
    assert [f["file"] for f in done.failures] == [str(folder / "broken.wav")]
    assert done.failure_report == tmp_path / "sub.failures.jsonl" and done.failure_report.exists()
    assert "features of 7 file(s)" in lines[0] and "(7 decoded now, 1 failed)" in lines[0]
    assert lines[1].startswith(f"{folder / 'broken.wav'}: cannot decode") and len(lines) == 2

    found = retrieve(run, ["A dog barks."], k=7, audio_dir=folder, cache_root=cache, report=lines.append)
    assert [n for n, _ in found.results[0]] == _expected_top(run, folder, NAMES, ["A dog barks."], 7)[0]
    assert "(0 decoded now, 1 failed)" in lines[2] and len(found.failures) == 1
    with pytest.raises(EmptyQueryError, match="empty after normalisation"):
        retrieve(tmp_path / "not-a-run", ["a dog", "?!"])  # checked before the run is read
    printed = capfd.readouterr()
    assert printed.out == "" and "decoded now" not in printed.err and "cannot decode" not in printed.err


@pytest.mark.parametrize("rows,header,message", [
    (["a dog barks", "   ", "rain"], "caption", "queries.csv:3: empty caption"),
    (["a dog barks", "?!"], "caption", "queries.csv:3: caption '?!' has no words"),
    (["a dog barks"], "text", "queries.csv: no caption column (header: text, file_name)"),
    ([], "caption", "queries.csv: no rows below the header (caption, file_name); the file lists no query"),
])
def test_bad_query_file_is_one_line_error_naming_the_row(tmp_path: Path, rows: list[str], header: str,
                                                         message: str) -> None:
    from audioret.pipeline.datasets import DatasetError
    from audioret.pipeline.queries import read_queries

    with pytest.raises(DatasetError) as err:
        read_queries(_queries(tmp_path / "queries.csv", rows, header))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_queries_keep_the_text_verbatim_and_normalise_for_the_encoder(tmp_path: Path) -> None:
    from audioret.pipeline.queries import read_queries

    path = tmp_path / "q.csv"
    path.write_bytes("\ufeffCaption\r\n\"  Rain, on a tin roof! \"\r\n".encode("utf-8"))  # BOM, CRLF, header case
    [q] = read_queries(path)
    assert (q.text, q.normalised, q.where) == ("  Rain, on a tin roof! ", "rain on a tin roof", f"{path}:2")


def test_cli_rejects_bad_queries_before_loading_or_decoding(folder: Path, tmp_path: Path) -> None:
    queries = _queries(tmp_path / "queries.csv", ["a dog barks", ""])
    not_a_run = tmp_path / "run"  # never read: the query file is checked first
    not_a_run.mkdir()
    proc = run_cli("predict", not_a_run, "--audio-dir", folder, "--queries", queries, "--out", tmp_path / "sub.csv",
                   "--cache", tmp_path / "cache", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {queries}:3: empty caption; every row needs a query text"]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "sub.csv").exists()


def test_folder_kind_rules(folder: Path, tmp_path: Path) -> None:
    from audioret.pipeline.datasets import DatasetError, load_records

    records, problems = load_records("folder", folder)
    assert [(r.clip_id, r.split, r.captions) for r in records][-2:] == [("sheep.mp3", "folder", []),
                                                                       ("sub/0_george_0.wav", "folder", [])]
    assert "broken.wav" in [r.clip_id for r in records] and "._cow.mp3" not in [r.clip_id for r in records]
    assert len(records) == 8 and problems == []
    assert {r.split for r in load_records("folder", folder, splits=["eval"])[0]} == {"eval"}
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio here\n")
    with pytest.raises(DatasetError, match="no audio files in this folder"):
        load_records("folder", empty)

"""CSV inputs as users write them (cache/text_files.py, pipeline/datasets.py), through the real CLI on real audio:
caption columns spelled `caption` / `caption1` / `Caption_1`, a quote left open (it used to swallow the rows
after it), and CP949 files (Korean Windows copies of Clotho's CSVs) with `--encoding`."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from audioret.cache.caption_shards import CaptionCache
from audioret.pipeline.datasets import DatasetError, load_records
from audioret.pipeline.queries import read_queries
from audioret.trainer.relevance import RelevanceError, read_relevance
from support import AUDIO, run_cli

CLIPS = [AUDIO / "animals_cc0" / "cat.mp3", AUDIO / "animals_cc0" / "dog.mp3", AUDIO / "animals_cc0" / "cow.mp3"]
KOREAN = ["고양이가 야옹 하고 운다", "개 두 마리가 짖는다", "소가 음매 하고 운다"]


def write_rows(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        csv.writer(f).writerows(rows)
    return path


def prep_captions(*args) -> "object":
    return run_cli("prep", "captions", "--translator", "none", *map(str, args))


@pytest.mark.parametrize("column", ["caption", "caption1", "Caption_1", "CAPTION 1"])
def test_manifest_caption_column_spellings_are_read(tmp_path: Path, column: str) -> None:
    manifest = write_rows(tmp_path / "m.csv", [["split", "file_name", column],
                                               *[["train", str(p), f"a {p.stem} sound"] for p in CLIPS[:2]]])
    proc = prep_captions("--dataset", "manifest", "--manifest", manifest, "--cache", tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "2 clips, 2 captions" in proc.stderr
    assert CaptionCache.open(tmp_path / "cache").raw(str(CLIPS[1])) == ["a dog sound"]


def test_manifest_without_a_caption_column_is_refused_naming_its_columns(tmp_path: Path) -> None:
    manifest = write_rows(tmp_path / "m.csv", [["split", "file_name", "description"],
                                               *[["train", str(p), "an animal"] for p in CLIPS[:2]]])
    proc = prep_captions("--dataset", "manifest", "--manifest", manifest, "--cache", tmp_path / "cache")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {manifest}: none of the 2 clip(s) has a caption; captions are read from the columns "
        "caption_1..caption_N (or caption, caption1, Caption_1: any case); its columns are: split, file_name, "
        "description")
    # prep audio needs no captions: the same manifest is fine there
    assert run_cli("prep", "audio", "--dataset", "manifest", "--manifest", manifest, "--cache", tmp_path / "c2",
                   "--workers", "1", "--no-progress").returncode == 0


def test_unterminated_quote_in_a_query_file_names_the_row(tmp_path: Path) -> None:
    queries = tmp_path / "queries.csv"
    queries.write_text('caption\nA dog barks.\n"A cat meows, then\nA cow moos.\nRain falls.\n', encoding="utf-8")
    out = tmp_path / "sub.csv"
    proc = run_cli("predict", tmp_path, "--audio-dir", AUDIO / "animals_cc0", "--queries", queries, "--out", out)
    assert proc.returncode == 1 and not out.exists()
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: {queries}:3: malformed CSV quoting in the row starting here (unexpected end of data, line 5)")


def test_quote_closed_lines_later_in_a_manifest_names_the_row(tmp_path: Path) -> None:
    """The quote closes on a later line, so the CSV is well formed: 1 clip instead of 3 before; now refused."""
    manifest = tmp_path / "m.csv"
    manifest.write_text(f'split,file_name,caption_1\ntrain,{CLIPS[0]},"a cat meows\ntrain,{CLIPS[1]},dogs bark\n'
                        f'train,{CLIPS[2]},a cow moos"\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"^{manifest}:2: a field runs over lines 2-4 \('a cat meows'\.\.\.\): "
                                           "a quote opened on line 2 is not closed on that line"):
        load_records("manifest", tmp_path, manifest=manifest)
    proc = prep_captions("--dataset", "manifest", "--manifest", manifest, "--cache", tmp_path / "cache")
    assert proc.returncode == 1 and f"error: {manifest}:2: a field runs over lines 2-4" in proc.stderr


def test_quoted_commas_and_quotes_still_read(tmp_path: Path) -> None:
    queries = write_rows(tmp_path / "q.csv", [["caption"], ['a dog, then "a cat"'], ["rain"]])
    assert [(q.text, q.where) for q in read_queries(queries)] == [('a dog, then "a cat"', f"{queries}:2"),
                                                                   ("rain", f"{queries}:3")]


def make_clotho(root: Path, encoding: str) -> Path:
    (root / "development").mkdir(parents=True)
    for p in CLIPS:
        shutil.copy(p, root / "development" / p.name)
    return write_rows(root / "clotho_captions_development.csv",
                      [["file_name", "caption_1"], *[[p.name, k] for p, k in zip(CLIPS, KOREAN, strict=True)]],
                      encoding)


def test_cp949_csv_names_the_line_and_reads_with_encoding(tmp_path: Path) -> None:
    csv_path = make_clotho(tmp_path / "cp949", "cp949")
    cache = tmp_path / "cache"
    refused = prep_captions("--dataset", "clotho", "--root", tmp_path / "cp949", "--cache", cache)
    assert refused.returncode == 1
    first_korean = len("file_name,caption_1\r\ncat.mp3,".encode())
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: {csv_path}:2: not UTF-8 text (invalid start byte: byte {first_korean}, column 9); if the file is "
        "in another encoding, name it with --encoding (e.g. --encoding cp949)")
    read = prep_captions("--dataset", "clotho", "--root", tmp_path / "cp949", "--cache", cache, "--encoding", "cp949")
    assert read.returncode == 0, read.stderr
    assert CaptionCache.open(cache).raw("dog.mp3") == [KOREAN[1]]
    # The key is made from the decoded captions: the same text in UTF-8 is the same cache, nothing new is made.
    make_clotho(tmp_path / "utf8", "utf-8")
    same = prep_captions("--dataset", "clotho", "--root", tmp_path / "utf8", "--cache", cache)
    assert same.returncode == 0 and same.stdout == read.stdout and "nothing to do" in same.stderr
    bad = prep_captions("--dataset", "clotho", "--root", tmp_path / "cp949", "--cache", cache, "--encoding", "kr")
    assert bad.returncode == 2 and "unknown encoding 'kr'" in bad.stderr


def test_query_and_relevance_files_take_an_encoding(tmp_path: Path) -> None:
    queries = write_rows(tmp_path / "q.csv", [["caption"], [KOREAN[0]]], "cp949")
    with pytest.raises(DatasetError, match=rf"^{queries}:2: not UTF-8 text .*--encoding cp949"):
        read_queries(queries)
    assert [q.text for q in read_queries(queries, "cp949")] == [KOREAN[0]]
    rel = write_rows(tmp_path / "r.csv", [["query", "file_name"], [KOREAN[1], "dog.mp3"]], "cp949")
    with pytest.raises(RelevanceError, match=rf"^{rel}:2: not UTF-8 text"):
        read_relevance(rel)
    assert read_relevance(rel, "cp949").queries == {KOREAN[1]: ["dog.mp3"]}
    for command in (["predict", tmp_path, "--audio-dir", tmp_path, "--queries", queries, "--out", tmp_path / "o.csv"],
                    ["eval", tmp_path, "--relevance", rel]):
        proc = run_cli(*command, "--encoding", "no-such-codec")
        assert proc.returncode == 2 and "unknown encoding 'no-such-codec'" in proc.stderr

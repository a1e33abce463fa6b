"""Relevance files in both forms (DCASE 2025 list literals, long pairs) read to the same thing; what a split lacks
is reported, not dropped; malformed files fail with one line naming the file and line."""
from __future__ import annotations

from pathlib import Path

import pytest

from audioret.trainer.relevance import RelevanceError, match_relevance, read_relevance
from support import write_csv as write

QUERIES = {"A dog barks. ": ["dog.wav", "kennel, night.wav"], "Rain on a roof": ["rain.wav"],
           "Grüße: birds sing": ["birds.wav", "dog.wav", "forest.wav"]}


def test_dcase_2025_and_long_forms_read_the_same(tmp_path: Path) -> None:
    wide = write(tmp_path / "wide.csv", ["query", "audio_filenames"],
                 [[q, repr(names)] for q, names in QUERIES.items()])
    long = write(tmp_path / "long.csv", ["query", "file_name", "score"],
                 [[q, n, "1"] for q, names in QUERIES.items() for n in names] + [["Rain on a roof", "dog.wav", "0"]])
    a, b = read_relevance(wide), read_relevance(long)
    assert a.queries == b.queries == QUERIES  # verbatim query text (trailing space kept), file order, score 0 out
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + long.read_bytes().replace(b",score", b""))
    assert read_relevance(tmp_path / "bom.csv").queries["Rain on a roof"] == ["rain.wav", "dog.wav"]


def test_malformed_files_name_file_and_line(tmp_path: Path) -> None:
    bad_list = write(tmp_path / "a.csv", ["query", "audio_filenames"], [["q1", "['a.wav']"], ["q2", "a.wav, b.wav"]])
    with pytest.raises(RelevanceError, match=r"a\.csv:3: audio_filenames must be a list"):
        read_relevance(bad_list)
    code = write(tmp_path / "b.csv", ["query", "audio_filenames"], [["q", "__import__('os').getcwd()"]])
    with pytest.raises(RelevanceError, match="must be a list"):  # literal_eval: nothing is executed
        read_relevance(code)
    with pytest.raises(RelevanceError, match=r"c\.csv: a relevance file needs the columns"):
        read_relevance(write(tmp_path / "c.csv", ["caption", "file"], [["q", "a.wav"]]))
    with pytest.raises(RelevanceError, match=r"d\.csv:2: score 'high' is not a number"):
        read_relevance(write(tmp_path / "d.csv", ["query", "file_name", "score"], [["q", "a.wav", "high"]]))
    (tmp_path / "e.csv").write_bytes(b"query,file_name\n\xff\xfe,a.wav\n")
    with pytest.raises(RelevanceError,
                       match=r"e\.csv:2: not UTF-8 text \(invalid start byte: byte 16, column 1\); .*--encoding"):
        read_relevance(tmp_path / "e.csv")


def test_match_reports_what_the_split_lacks(tmp_path: Path) -> None:
    rel = read_relevance(write(tmp_path / "r.csv", ["query", "file_name"], [
        ["A dog barks. ", "dog.wav"], ["A dog barks. ", "wolf.wav"],  # one file the split lacks
        ["Rain on a roof", "rain.wav"],  # caption is "  Rain on a roof " in the split: matched after trimming
        ["Never said", "dog.wav"],  # not a caption of the split
        ["Birds sing", "owl.wav"]]))  # no relevant clip left
    captions = ["a cat", "A dog barks. ", "A dog barks.", "  Rain on a roof ", "Birds sing", "A dog barks. "]
    m = match_relevance(rel, captions, ["dog.wav", "rain.wav", "cat.wav"], "evaluation")
    assert m.query_rows == [1, 3] and m.relevant == [[0], [1]]  # exact text first, first occurrence
    r = m.report()
    assert (r["queries"], r["scored"]) == (4, 2)
    assert r["queries_not_in_split"] == {"count": 1, "first": ["Never said"]}
    assert r["files_not_in_split"] == {"count": 2, "first": ["wolf.wav", "owl.wav"]}
    assert r["queries_without_relevant_clip"] == {"count": 1, "first": ["Birds sing"]}
    assert r["queries_matched_after_trimming_whitespace"]["first"] == ["Rain on a roof"]
    with pytest.raises(RelevanceError, match="none of its 4 queries can be scored on split 'validation'"):
        match_relevance(rel, ["x"], ["dog.wav"], "validation")

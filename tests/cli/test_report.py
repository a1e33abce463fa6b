"""`audioret report` on a real trained run: the page, its figures, its links to the recordings (present, moved
away, copied), the choice of worst/best queries, escaping, and a real headless Chromium opening it from disk."""
from __future__ import annotations

import contextlib
import json
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch

from audioret.trainer.evaluate import SplitScores
from audioret.trainer.report import AudioSources, build_report, rank_queries, select_queries
from audioret.trainer.report_html import ClipMedia, metrics_table, query_block
from support import run_cli
from support.browser import check_page, file_url_path, find_chromium

needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="chromium not installed (`make test` installs Debian's chromium when run as root)")


@pytest.fixture(scope="module")
def trained(demo_run) -> Path:
    """The shared 1-epoch demo run (tests/cli/conftest.py): the report only reads it and writes report/ into it."""
    return demo_run


@pytest.fixture(scope="module")
def loaded(trained):
    from audioret.trainer.evaluate import LoadedRun

    return LoadedRun(trained, "best", "cpu")


class _Links(HTMLParser):
    """The src of every <audio> and <img> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: list[str] = []
        self.images: list[tuple[str, str]] = []  # (class, src)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "audio":
            self.audio.append(a["src"])
        elif tag == "img":
            self.images.append((a.get("class", ""), a["src"]))


def links(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


@contextlib.contextmanager
def moved_away(path: Path):
    """The recording is gone for the duration (then put back: the dataset is shared by the session's tests)."""
    hidden = path.with_name(path.name + ".away")
    path.rename(hidden)
    try:
        yield
    finally:
        hidden.rename(path)


def top_clip_of_worst_query(loaded) -> Path:
    """The recording shown first in the report (the top clip of the worst query), from the cache's manifest."""
    build_report(loaded, n_worst=1, n_best=0)
    clip = json.loads((loaded.run_dir / "report" / "report.json").read_text())["worst"][0]["hits"][0]["clip_id"]
    path = AudioSources(loaded.open_caches()[0].manifest.extra).recorded(clip)
    assert path is not None and path.is_file() and path.name == clip
    return path


def _scores(sim: list[list[float]], targets: list[int]) -> SplitScores:
    clips = [f"c{j}" for j in range(len(sim[0]))]
    return SplitScores({}, torch.tensor(sim), clips, [clips[t] for t in targets], [0] * len(targets))


def test_worst_and_best_queries_follow_rank_then_margin() -> None:
    sim = [[0.9, 0.1, 0.2, 0.0],   # q0 target c0: rank 1, margin +0.7
           [0.5, 0.6, 0.1, 0.0],   # q1 target c0: rank 2, margin -0.1
           [0.8, 0.1, 0.0, 0.9],   # q2 target c2: rank 4, margin -0.9
           [0.3, 0.25, 0.2, 0.22], # q3 target c2: rank 4 (tie on rank), margin -0.1
           [0.2, 0.4, 0.1, 0.3],   # q4 target c1: rank 1, margin +0.1
           [0.5, 0.5, 0.0, 0.0]]   # q5 target c1: equal scores, the lower clip index wins: rank 2, margin 0
    queries = rank_queries(_scores(sim, [0, 0, 2, 2, 1, 1]), [f"q{i}" for i in range(6)], top=2)
    assert [q.rank for q in queries] == [1, 2, 4, 4, 1, 2]
    assert [round(q.margin, 6) for q in queries] == [0.7, -0.1, -0.9, -0.1, 0.1, 0.0]
    assert [q.ap10 for q in queries] == [1.0, 0.5, 0.25, 0.25, 1.0, 0.5]
    worst, best = select_queries(queries, n_worst=3, n_best=3)
    assert [q.caption for q in worst] == ["q2", "q3", "q1"]  # rank 4 twice: the lower margin first
    assert [q.caption for q in best] == ["q0", "q4", "q5"]  # never a query already shown as worst
    q2 = queries[2]  # its correct clip ranks below the top 2: shown after them, marked
    assert [(h.clip_id, h.rank, h.correct) for h in q2.hits] == [("c3", 1, False), ("c0", 2, False), ("c2", 4, True)]


def test_html_escapes_captions_names_and_links() -> None:
    queries = rank_queries(_scores([[0.9, 0.1]], [0]), ['a <b>dog</b> & "cat"'], top=2)
    media = {"c0": ClipMedia("x<y>.wav", audio_href="../data/a%20b%23.wav", source="/d/x<y>.wav"),
             "c1": ClipMedia("c1", mel_href="mel/000-c1.png")}
    block = query_block(1, queries[0], media, top=2)
    assert "a &lt;b&gt;dog&lt;/b&gt; &amp; &quot;cat&quot;" in block and "<b>" not in block
    assert "x&lt;y&gt;.wav" in block and 'src="../data/a%20b%23.wav"' in block and 'src="mel/000-c1.png"' in block
    table = metrics_table({"map10": 0.25, "map16": 0.3, "new_metric<": 1.0}, {"n_clips": 1045})
    assert ">mAP@16<" in table and "new_metric&lt;" in table and ">1,045<" in table


def test_cli_writes_a_report_linked_to_the_recordings(trained, tmp_path) -> None:
    assert "Examples:" in run_cli("report", "--help", check=True).stdout
    proc = run_cli("report", tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {tmp_path}: not a training run (no run.json)"
    proc = run_cli("report", trained, "--split", "test", check=True)  # "test" is an alias of evaluation
    index = trained / "report" / "index.html"
    assert proc.stdout.strip().splitlines()[-1] == f"report: {index}"
    data = json.loads((trained / "report" / "report.json").read_text())
    run_cli("eval", trained, check=True)
    result = json.loads((trained / "eval-evaluation.json").read_text())
    assert data["metrics"] == pytest.approx({k: result[k] for k in data["metrics"]}, abs=1e-6)
    assert (data["n_captions"], data["n_clips"], data["missing_sources"]) == (40, 8, [])
    assert len(data["worst"]) == 20 and len(data["best"]) == 10
    ranks = [q["rank"] for q in data["worst"]]
    assert ranks == sorted(ranks, reverse=True) and data["best"][0]["rank"] == 1
    assert all(len(q["hits"]) >= 5 and sum(h["correct"] for h in q["hits"]) <= 1 for q in data["worst"])

    page = links(index)
    assert [src for _, src in page.images] == ["training.png", "ranks.png"]
    assert png_size(trained / "report" / "training.png")[0] > 0 and png_size(trained / "report" / "ranks.png")[0] > 0
    assert page.audio and all(src.startswith("../") for src in page.audio)  # relative to the page
    for src in page.audio:
        assert (index.parent / unquote(src)).resolve().is_file(), src
        assert (index.parent / unquote(src)).resolve().parent.name == "evaluation"


def test_a_recording_gone_shows_its_log_mel(loaded, tmp_path) -> None:
    audio = loaded.open_caches()[0]  # prep audio recorded where every clip came from
    assert all(AudioSources(audio.manifest.extra).existing(c) is not None for c in audio.clip_ids)
    source = top_clip_of_worst_query(loaded)
    first = build_report(loaded)
    clip = source.name
    with moved_away(source):
        result = build_report(loaded)
    assert result.missing == [clip] and result.linked == first.linked - 1
    page = links(result.index)
    mels = [src for cls, src in page.images if cls == "mel"]
    assert len(set(mels)) == 1 and mels[0].startswith("mel/") and clip in mels[0]  # one image, on every row of it
    width, height = png_size(result.index.parent / unquote(mels[0]))
    assert height == 64 and width > 0  # one row per mel bin
    assert not any(src.endswith("/" + clip) for src in page.audio)
    assert not list(loaded.run_dir.glob(".report-*"))  # staging folders never stay behind

    moved = tmp_path / "data-moved"  # the dataset moved since prep: --audio-root finds every recording again
    shutil.copytree(source.parent, moved / source.parent.name)
    again = build_report(loaded, audio_root=moved)
    assert again.missing == [] and again.linked == first.linked
    assert all((again.index.parent / unquote(src)).resolve().is_relative_to(moved) for src in links(again.index).audio)


def test_copied_recordings_play_after_the_folder_moves(loaded, tmp_path) -> None:
    result = build_report(loaded, copy_audio=True, n_worst=3, n_best=2)
    moved = tmp_path / "elsewhere" / "report"
    shutil.copytree(result.index.parent, moved)
    page = links(moved / "index.html")
    assert result.copied == len(set(page.audio)) > 0  # one copy per recording, however often it is shown
    assert all(src.startswith("audio/") and (moved / unquote(src)).is_file() for src in page.audio)
    assert all((moved / unquote(src)).is_file() for _, src in page.images)


@needs_chromium
def test_real_browser_loads_the_report_without_errors(loaded, tmp_path) -> None:
    """Headless Chromium opens the page from disk: no console errors, every image decoded, every player's file
    exists and its metadata loaded; one recording is moved away first so a log-mel image is on the page too."""
    with moved_away(top_clip_of_worst_query(loaded)):
        result = build_report(loaded)
    check = check_page(result.index, tmp_path / "report.png")
    assert check.console_errors == []
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in check.images), check.images
    mels = sum("/mel/" in i["src"] for i in check.images)
    data = json.loads((result.index.parent / "report.json").read_text())
    assert mels >= 1 and len(check.audio) + mels == sum(len(q["hits"]) for q in data["worst"] + data["best"])
    for player in check.audio:
        assert file_url_path(player["src"]).is_file(), player
        assert player["error"] is None and player["readyState"] >= 1, player
    assert png_size(check.screenshot)[0] == 1100


@needs_chromium
def test_browser_check_sees_a_broken_page(tmp_path) -> None:
    """The check above can fail: a missing image and a missing recording are console errors and undecoded."""
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><meta charset="utf-8"><img src="gone.png">'
                    '<audio controls preload="metadata" src="gone.wav"></audio>', encoding="utf-8")
    check = check_page(page, tmp_path / "broken.png", media_timeout=5)
    assert check.images[0]["naturalWidth"] == 0 and check.audio[0]["error"] is not None
    assert any("gone.png" in e for e in check.console_errors)

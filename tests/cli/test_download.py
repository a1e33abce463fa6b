"""`audioret download clotho` against a loopback HTTP server that serves tiny real Clotho-shaped files.

The server (ThreadingHTTPServer on 127.0.0.1) speaks HTTP Range, logs every request (path + Range header), and can
drop a connection half-way once or stall a file half-way so the downloader subprocess can be killed mid-file.
The archives are real .7z files built with py7zr from the bundled FSDD WAV clips. No test touches the internet.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import py7zr
import pytest

from audioret.pipeline.download import CLOTHO_FILES, download_clotho, extract_split, load_checksums
from audioret.pipeline.fetch import DownloadError, FetchOptions, RemoteFile, fetch, make_session
from support import AUDIO, cli_cmd, cli_env, run_cli
from support.download_server import FAST, Server, md5_hex

WAVS = sorted((AUDIO / "fsdd_ccbysa").glob("*.wav"))
# clip ids are unique across splits
SPLIT_CLIPS = {"development": WAVS[:3], "validation": WAVS[3:5], "evaluation": WAVS[5:]}
# The real Clotho archives hold a top-level folder named after the split; evaluation here has none, to cover both.
TOP_FOLDER = {"development": True, "validation": True, "evaluation": False}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A folder with every Clotho v2.1 file name, each a small real file; sizes/md5s in checksums.json."""
    root = tmp_path_factory.mktemp("mirror")
    (root / "LICENSE").write_text("Fixture licence: clips from the Free Spoken Digit Dataset, CC BY-SA 4.0.\n")
    for split, clips in SPLIT_CLIPS.items():
        with open(root / f"clotho_captions_{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name"] + [f"caption_{i}" for i in range(1, 6)])
            for clip in clips:
                writer.writerow([clip.name] + [f"a voice says a digit, take {i}" for i in range(1, 6)])
        with open(root / f"clotho_metadata_{split}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([["file_name", "keywords"]] + [[c.name, "speech;digit"] for c in clips])
        # FILTER_COPY keeps the archive as large as its WAVs, so a throttled download takes a predictable time.
        with py7zr.SevenZipFile(root / f"clotho_audio_{split}.7z", "w", filters=[{"id": py7zr.FILTER_COPY}]) as z:
            for clip in clips:
                z.write(clip, f"{split}/{clip.name}" if TOP_FOLDER[split] else clip.name)
    table = {f.name: {"md5": md5_hex(root / f.name), "size": (root / f.name).stat().st_size} for f in CLOTHO_FILES}
    (root / "checksums.json").write_text(json.dumps(table))
    return root


@pytest.fixture
def server(mirror):
    srv = Server(mirror)
    yield srv
    srv.close()


def _assert_layout(root: Path, splits: list[str]) -> None:
    """What `prep audio --dataset clotho` reads: ROOT/<split>/<file_name> for every row of each captions CSV."""
    for split in splits:
        with open(root / f"clotho_captions_{split}.csv", newline="") as handle:
            names = [row["file_name"] for row in csv.DictReader(handle)]
        assert names == [c.name for c in SPLIT_CLIPS[split]]
        wavs = sorted(p.name for p in (root / split).glob("*.wav"))
        assert wavs == sorted(names), split
        for clip in SPLIT_CLIPS[split]:
            assert (root / split / clip.name).read_bytes() == clip.read_bytes()
    if importlib.util.find_spec("audioret.pipeline.datasets") is not None:  # the reader itself, once it has landed
        from audioret.pipeline.datasets import load_records
        records, problems = load_records("clotho", root, splits=splits)
        assert problems == [] and len(records) == sum(len(SPLIT_CLIPS[s]) for s in splits)


def test_drop_resume_bad_checksum_then_rerun_fetches_nothing(tmp_path, server, mirror):
    dest = tmp_path / "clotho"
    archive = "clotho_audio_development.7z"
    half = (mirror / archive).stat().st_size // 2
    server.drop_once[archive] = half
    bad_table = json.loads((mirror / "checksums.json").read_text())
    bad_table["clotho_metadata_validation.csv"]["md5"] = "0" * 32
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bad_table))

    proc = run_cli("download", "clotho", "--root", dest, "--base-url", server.url, "--checksums", bad, *FAST)
    assert proc.returncode == 3, proc.stderr
    kept = dest / "clotho_metadata_validation.csv.bad-md5"
    assert kept.is_file() and str(kept) in proc.stderr
    assert not (dest / "clotho_metadata_validation.csv").exists()
    report = json.loads((dest / "download-report.json").read_text())
    assert [f["file"] for f in report["failures"]] == ["clotho_metadata_validation.csv"]
    # The dropped archive was resumed exactly where the connection broke, not fetched again from byte 0.
    assert server.requests_for(archive) == [None, f"bytes={half}-"]
    _assert_layout(dest, ["development", "validation", "evaluation"])
    assert not list(dest.glob("*.7z")) and not list(dest.glob("*.part"))

    server.log.clear()
    proc = run_cli("download", "clotho", "--root", dest, "--base-url", server.url,
                   "--checksums", mirror / "checksums.json", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert [name for name, _ in server.log] == ["clotho_metadata_validation.csv"]
    assert not (dest / "download-report.json").exists() and kept.is_file()

    server.log.clear()
    proc = run_cli("download", "clotho", "--root", dest, "--base-url", server.url,
                   "--checksums", mirror / "checksums.json", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert server.log == []


def test_kill_9_mid_download_then_rerun_finishes_without_refetching(tmp_path, server, mirror):
    dest = tmp_path / "clotho"
    archive = "clotho_audio_development.7z"
    size = (mirror / archive).stat().st_size
    server.stall_after[archive] = size // 2  # half the archive, then the server stalls until released
    args = ["download", "clotho", "--root", dest, "--splits", "development", "--base-url", server.url,
            "--checksums", mirror / "checksums.json", *FAST]
    proc = subprocess.Popen(cli_cmd(*args), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    part = dest / (archive + ".part")
    deadline = time.monotonic() + 60
    while not (server.stalled.is_set() and part.exists() and part.stat().st_size > 0):
        assert proc.poll() is None, f"the download ended before the kill: {proc.communicate()[1].decode()}"
        assert time.monotonic() < deadline, "download never started"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    have = part.stat().st_size
    assert 0 < have <= size // 2
    assert (dest / "clotho_captions_development.csv").is_file() and not (dest / "development").exists()

    server.log.clear()
    server.stall_after.clear()
    server.release.set()  # the stalled handler now writes into the dead client's socket and ends
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert server.log == [(archive, f"bytes={have}-")]  # CSVs and LICENSE were complete: not fetched again
    _assert_layout(dest, ["development"])
    assert not list(dest.glob(".extract-*"))


def test_keep_archives_rerun_is_offline(tmp_path, server, mirror):
    dest = tmp_path / "clotho"
    args = ["download", "clotho", "--root", dest, "--splits", "evaluation", "--keep-archives",
            "--base-url", server.url, "--checksums", mirror / "checksums.json", *FAST]
    assert run_cli(*args).returncode == 0
    assert (dest / "clotho_audio_evaluation.7z").is_file()
    _assert_layout(dest, ["evaluation"])
    server.log.clear()
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert server.log == []


def test_unreachable_network_is_one_clear_error(tmp_path):
    with socket.socket() as sock:  # bound but not listening: connections are refused, and while the socket is
        sock.bind(("127.0.0.1", 0))  # held no other process can take the port and answer
        port = sock.getsockname()[1]
        proc = run_cli("download", "clotho", "--root", tmp_path / "c", "--base-url", f"http://127.0.0.1:{port}",
                       "--retries", "1", "--backoff", "0", "--no-progress")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach" in errors[0] and "network unreachable" in errors[0]


def test_disk_too_small_is_reported_before_writing(tmp_path, server, mirror):
    dest = tmp_path / "clotho"
    proc = run_cli("download", "clotho", "--root", dest, "--splits", "validation", "--base-url", server.url,
                   "--checksums", mirror / "checksums.json", "--no-progress", "--min-free", "100000T")
    assert proc.returncode == 1
    assert "not enough free disk" in proc.stderr and "clotho_audio_validation.7z" in proc.stderr
    assert not list(dest.glob("clotho_*"))


def test_usage_errors_exit_2(tmp_path, mirror):
    assert run_cli("download", "clotho", "--root", tmp_path, "--splits", "train").returncode == 2
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"clotho_audio_dev.7z": {"md5": None}}))
    proc = run_cli("download", "clotho", "--root", tmp_path, "--checksums", typo)
    assert proc.returncode == 2 and "clotho_audio_dev.7z" in proc.stderr


def test_server_without_range_support_restarts_the_part(tmp_path, server, mirror):
    name = "clotho_audio_validation.7z"
    remote = next(f for f in CLOTHO_FILES if f.name == name)
    data = (mirror / name).read_bytes()
    remote = RemoteFile(name, len(data), md5_hex(mirror / name), remote.split)
    (tmp_path / (name + ".part")).write_bytes(data[:100])
    server.ignore_range = True
    state = fetch(make_session(), f"{server.url}/{name}", tmp_path / name, remote,
                  FetchOptions(retries=0, min_free=0, progress=False))
    assert state == "downloaded" and (tmp_path / name).read_bytes() == data
    assert server.requests_for(name) == ["bytes=100-"]


def test_corrupt_archive_without_md5_leaves_no_split_folder_and_is_moved_aside(tmp_path, mirror):
    name = "clotho_audio_development.7z"
    data = (mirror / name).read_bytes()
    archive = tmp_path / name
    archive.write_bytes(data[: len(data) // 2])  # a truncated archive whose checksum nobody published
    remote = RemoteFile(name, None, None, "development")
    with pytest.raises(DownloadError, match=name) as failed:
        extract_split(archive, tmp_path, remote, FetchOptions(min_free=0, progress=False))
    aside = tmp_path / f"{name}.bad-archive"  # no md5: a damaged download is not taken for a good one next time
    assert str(aside) in str(failed.value) and aside.read_bytes() == data[: len(data) // 2]
    assert not archive.exists() and not (tmp_path / "development").exists() and not list(tmp_path.glob(".extract-*"))
    archive.write_bytes(data)  # the next run extracts the good copy
    assert extract_split(archive, tmp_path, remote, FetchOptions(min_free=0, progress=False)) == "extracted"
    extracted = sorted(p.name for p in (tmp_path / "development").glob("*.wav"))
    assert extracted == [c.name for c in SPLIT_CLIPS["development"]]
    assert not list(tmp_path.glob(".extract-*"))


def test_split_folder_made_by_someone_else_is_left_alone(tmp_path, server, mirror):
    own = tmp_path / "evaluation"
    own.mkdir()
    (own / "mine.wav").write_bytes(WAVS[0].read_bytes())
    result = download_clotho(tmp_path, ["evaluation"], base_url=server.url,
                             table=load_checksums(mirror / "checksums.json"),
                             opts=FetchOptions(min_free=0, progress=False))
    assert result.exit_code() == 0 and result.splits == {"evaluation": "foreign"}
    assert "clotho_audio_evaluation.7z" not in [name for name, _ in server.log]
    assert [p.name for p in own.iterdir()] == ["mine.wav"]


def test_an_archive_without_md5_that_fails_to_extract_is_fetched_again(tmp_path, mirror):
    """The server first serves a truncated archive whose md5 nobody published: the error names the real file (no
    temp folder that does not exist), and the next run fetches the archive again instead of reusing it."""
    name = "clotho_audio_validation.7z"
    served = tmp_path / "served"
    shutil.copytree(mirror, served)
    data = (mirror / name).read_bytes()
    (served / name).write_bytes(data[: len(data) // 2])
    table = json.loads((mirror / "checksums.json").read_text())
    table[name] = {"md5": None, "size": None}
    (tmp_path / "no-md5.json").write_text(json.dumps(table))
    dest = tmp_path / "clotho"
    srv = Server(served)
    try:
        args = ["download", "clotho", "--root", dest, "--splits", "validation", "--base-url", srv.url,
                "--checksums", tmp_path / "no-md5.json", *FAST]
        first = run_cli(*args)
        assert first.returncode == 3, first.stderr
        error = next(line for line in first.stderr.splitlines() if line.startswith("error:"))
        aside = dest / f"{name}.bad-archive"
        assert f"{dest / name}: cannot extract" in error and f"moved aside as {aside}" in error
        assert aside.is_file() and not list(dest.glob(".extract-*")) and ".tmp" not in error
        (served / name).write_bytes(data)
        srv.log.clear()
        second = run_cli(*args)
        assert second.returncode == 0, second.stderr
        assert [n for n, _ in srv.log] == [name]  # fetched again; the verified CSVs were not
        _assert_layout(dest, ["validation"])
    finally:
        srv.close()

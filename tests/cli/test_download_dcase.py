"""`audioret download dcase2022-retrieval` against the loopback Zenodo stand-in of test_download.py: the same
table-driven fetch (verify, resume, idempotent rerun), the layout `predict` reads, and md5 mismatches kept aside."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import py7zr
import pytest

from audioret.pipeline.download import DCASE2022_RETRIEVAL_FILES
from support import AUDIO, run_cli
from support.download_server import FAST, Server, md5_hex

WAVS = sorted((AUDIO / "fsdd_ccbysa").glob("*.wav"))[:3]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """Every file name of Zenodo record 6590983, each a small real file; their sizes/md5s in checksums.json."""
    root = tmp_path_factory.mktemp("dcase-mirror")
    with open(root / "retrieval_captions.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["caption"], ["A man says zero."], [" someone counts, slowly "]])
    with open(root / "retrieval_audio_metadata.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["file_name", "keywords"]] + [[w.name, "speech"] for w in WAVS])
    with py7zr.SevenZipFile(root / "retrieval_audio.7z", "w") as z:
        for wav in WAVS:
            z.write(wav, f"retrieval_audio/{wav.name}")
    table = {f.name: {"md5": md5_hex(root / f.name), "size": (root / f.name).stat().st_size}
             for f in DCASE2022_RETRIEVAL_FILES}
    (root / "checksums.json").write_text(json.dumps(table))
    return root


@pytest.fixture
def server(mirror):
    srv = Server(mirror)
    yield srv
    srv.close()


def _download(server: Server, mirror: Path, root: Path, *extra: str):
    return run_cli("download", "dcase2022-retrieval", "--root", root, "--base-url", server.url, *FAST,
                   "--checksums", mirror / "checksums.json", *extra)


def test_download_verifies_extracts_and_reruns_without_network(server: Server, mirror: Path, tmp_path: Path) -> None:
    root = tmp_path / "dcase2022"
    proc = _download(server, mirror, root)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (root / "retrieval_audio").glob("*.wav")) == [w.name for w in WAVS]
    assert (root / "retrieval_captions.csv").read_bytes() == (mirror / "retrieval_captions.csv").read_bytes()
    assert not (root / "retrieval_audio.7z").exists()  # archive removed after a verified extraction
    requests = len(server.log)
    again = _download(server, mirror, root)
    assert again.returncode == 0 and len(server.log) == requests  # CSVs verified on disk, audio already extracted


def test_md5_mismatch_is_kept_aside_and_partial(server: Server, mirror: Path, tmp_path: Path) -> None:
    table = json.loads((mirror / "checksums.json").read_text())
    table["retrieval_captions.csv"]["md5"] = "0" * 32
    bad = tmp_path / "checksums.json"
    bad.write_text(json.dumps(table))
    root = tmp_path / "d"
    proc = run_cli("download", "dcase2022-retrieval", "--root", root, "--base-url", server.url, *FAST,
                   "--checksums", bad)
    assert proc.returncode == 3, proc.stderr
    report = json.loads((root / "download-report.json").read_text())
    assert [f["file"] for f in report["failures"]] == ["retrieval_captions.csv"]
    assert (root / "retrieval_captions.csv.bad-md5").exists() and (root / "retrieval_audio").is_dir()


"""What the decoder prints from C (mpg123 on fd 2) is attributed to its file: `warning: <path>: <message>`.

Two real triggers: horse.mp3 of the bundled CC0 animals (an ID3v2 tag of length 0, exactly as published) and a
copy of dog.mp3 whose Info/Xing header claims 400,000 stream bytes instead of 240,960 (what a tag editor or a
truncated re-mux leaves behind).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from audioret.pipeline.audio_io import call_capturing_stderr, load_mono
from support import AUDIO, run_cli
from support.prep import write_manifest

HORSE = AUDIO / "animals_cc0" / "horse.mp3"
ID3_MESSAGE = "ID3v2: unrealistic small tag lengh 0, skipping"  # mpg123's spelling
XING_MESSAGE = "Xing stream size off by more than 1%, fuzzy seeking may be even more fuzzy than by design!"


def xing_off(dst: Path) -> Path:
    data = bytearray((AUDIO / "animals_cc0" / "dog.mp3").read_bytes())
    at = data.find(b"Info", 0, 4096)
    assert at > 0 and int.from_bytes(data[at + 4:at + 8], "big") & 2  # the header carries a byte count
    data[at + 12:at + 16] = (400_000).to_bytes(4, "big")
    dst.write_bytes(bytes(data))
    return dst


def test_decoder_messages_reach_the_callback_not_the_terminal(tmp_path: Path, capfd) -> None:
    bad_xing = xing_off(tmp_path / "dog, retagged.mp3")
    got: list[str] = []
    y = load_mono(bad_xing, on_message=got.append)
    assert got == [XING_MESSAGE]
    assert np.array_equal(y, load_mono(AUDIO / "animals_cc0" / "dog.mp3", on_message=got.append))  # same audio
    got.clear()
    load_mono(HORSE, on_message=got.append)
    assert got == [ID3_MESSAGE]
    assert capfd.readouterr().err == ""  # nothing leaked to fd 2 unattributed
    load_mono(HORSE)  # default: one attributed line on stderr
    assert capfd.readouterr().err == f"warning: {HORSE}: {ID3_MESSAGE}\n"


def test_capture_restores_fd2_when_the_call_raises(capfd) -> None:
    got: list[str] = []

    def fails() -> None:
        os.write(2, b"[src/x.c:f():1] note: from C\n")
        raise RuntimeError("decoder blew up")

    with pytest.raises(RuntimeError, match="blew up"):
        call_capturing_stderr(fails, got.append)
    os.write(2, b"after\n")
    assert got == ["from C"] and capfd.readouterr().err == "after\n"


def test_prep_audio_names_the_file_of_every_decoder_warning(tmp_path: Path) -> None:
    d = tmp_path / "clips"
    d.mkdir()
    shutil.copy(HORSE, d / "horse.mp3")
    xing_off(d / "dog, retagged.mp3")
    shutil.copy(AUDIO / "fsdd_ccbysa" / "0_george_0.wav", d / "quiet.wav")
    manifest = write_manifest(d / "clips.csv", sorted(d.iterdir()))
    proc = run_cli("prep", "audio", "--dataset", "manifest", "--manifest", manifest, "--cache", tmp_path / "cache",
                   "--workers", "2", "--shard-size", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"warning: {d / 'horse.mp3'}: {ID3_MESSAGE}" in lines
    assert f"warning: {d / 'dog, retagged.mp3'}: {XING_MESSAGE}" in lines
    assert "2 decoder warning(s) (the `warning: <file>: ...` lines above)" in lines
    assert not [x for x in lines if "libmpg123" in x or x.startswith("Warning: Xing")], lines

"""The rooms import downward only: cache knows nothing of pipeline/trainer; trainer never imports pipeline
(it never decodes audio); only the CLI in pipeline/cli wires the trainer in."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

ROOMS = ("cache", "pipeline", "trainer")


def imported_rooms(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in ROOMS}
    return found


def violations() -> list[str]:
    bad = []
    for room in ROOMS:
        for path in sorted((REPO / room).rglob("*.py")):
            rel = path.relative_to(REPO)
            uses = imported_rooms(path) - {room}
            if room == "cache" and uses:
                bad.append(f"{rel} imports {sorted(uses)}")
            if room == "trainer" and "pipeline" in uses:
                bad.append(f"{rel} imports pipeline")
            if room == "pipeline" and "trainer" in uses and "cli" not in rel.parts:
                bad.append(f"{rel} imports trainer outside pipeline/cli")
    return bad


def test_rooms_import_downward_only():
    assert violations() == []


def test_trainer_never_decodes_audio():
    decoders = ("soundfile", "soxr", "librosa", "audioread", "torchaudio", "pipeline.audio_io")
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "trainer").rglob("*.py")
                 if any(f"import {d}" in p.read_text() or f"from {d}" in p.read_text() for d in decoders)]
    assert offenders == []

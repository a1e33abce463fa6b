"""The layers import downward only, with no exceptions: `audioret.cache` at the bottom; `audioret.pipeline` and
`audioret.trainer` above it, never importing each other; `audioret.cli` on top. Nothing imports the
repository's folders as top-level names (`pipeline`, `trainer`, `cache`)."""
from __future__ import annotations

import ast
from pathlib import Path

from support import REPO

LAYERS = {"cache": "cache", "pipeline": "pipeline", "trainer": "trainer", "cli": "audioret/cli"}
ALLOWED = {"cache": set(), "pipeline": {"cache"}, "trainer": {"cache"}, "cli": {"cache", "pipeline", "trainer"}}
FOLDERS = ("pipeline", "trainer", "cache")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "audioret" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def project_files() -> list[Path]:
    roots = [REPO / "audioret", REPO / "cache", REPO / "pipeline", REPO / "trainer", REPO / "tests",
             REPO / "benchmarks", REPO / "scripts"]
    return sorted(p for root in roots for p in root.rglob("*.py"))


def violations() -> list[str]:
    bad = []
    for layer, folder in LAYERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            used = {layer_of(m) for m in imported_modules(path)} - {None, layer}
            for other in sorted(used - ALLOWED[layer]):
                bad.append(f"{path.relative_to(REPO)} ({layer}) imports audioret.{other}")
    return bad


def test_layers_import_downward_only():
    assert violations() == []


def test_nothing_imports_the_folders_as_top_level_packages():
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in project_files() for m in sorted(imported_modules(p))
                 if m.split(".")[0] in FOLDERS]
    assert offenders == []


def test_trainer_never_decodes_audio():
    decoders = ("soundfile", "soxr", "librosa", "audioread", "torchaudio")
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in (REPO / "trainer").rglob("*.py")
                 for m in imported_modules(p) if m.split(".")[0] in decoders or m.startswith("audioret.pipeline")]
    assert offenders == []

"""The layers import downward only, with no exceptions: `audioret.cache` at the bottom; `audioret.pipeline` and
`audioret.trainer` above it, never importing each other; the application layer `audioret.retrieval` above both (the
one place that joins the pipeline's feature extraction to the trainer's embedding function); `audioret.cli` on top.
Every module belongs to exactly one layer; nothing below the CLI parses options (click, argparse), and the
application layer never prints. Nothing imports the repository's folders as top-level names (`pipeline`,
`trainer`, `cache`)."""
from __future__ import annotations

import ast
from pathlib import Path

from support import REPO

# layer -> (its module, its source: a folder or one file)
LAYERS = {"cache": ("audioret.cache", "cache"), "pipeline": ("audioret.pipeline", "pipeline"),
          "trainer": ("audioret.trainer", "trainer"), "app": ("audioret.retrieval", "audioret/retrieval.py"),
          "cli": ("audioret.cli", "audioret/cli")}
ALLOWED = {"cache": set(), "pipeline": {"cache"}, "trainer": {"cache"}, "app": {"cache", "pipeline", "trainer"},
           "cli": {"cache", "pipeline", "trainer", "app"}}
LIBRARY = ("cache", "pipeline", "trainer", "app")
# The package itself: its __init__ (version, source-checkout path) and `python -m audioret` (calls the CLI).
PACKAGE_FILES = ("audioret/__init__.py", "audioret/__main__.py")
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
    for layer, (prefix, _) in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def layer_files(layer: str) -> list[Path]:
    source = REPO / LAYERS[layer][1]
    return [source] if source.suffix == ".py" else sorted(source.rglob("*.py"))


def project_files() -> list[Path]:
    roots = [REPO / "audioret", REPO / "cache", REPO / "pipeline", REPO / "trainer", REPO / "tests",
             REPO / "benchmarks", REPO / "scripts"]
    return sorted(p for root in roots for p in root.rglob("*.py"))


def violations() -> list[str]:
    bad = []
    for layer in LAYERS:
        for path in layer_files(layer):
            used = {layer_of(m) for m in imported_modules(path)} - {None, layer}
            for other in sorted(used - ALLOWED[layer]):
                bad.append(f"{path.relative_to(REPO)} ({layer}) imports {LAYERS[other][0]}")
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


def test_every_module_belongs_to_one_layer():
    owned = [p.relative_to(REPO).as_posix() for layer in LAYERS for p in layer_files(layer)]
    assert len(owned) == len(set(owned))
    package = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "audioret").rglob("*.py"))
    assert [p for p in package if p not in owned and p not in PACKAGE_FILES] == []


def printed_or_click(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = [m for m in imported_modules(path) if m.split(".")[0] == "click"]
    found += [f"print() at line {n.lineno}" for n in ast.walk(tree)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"]
    return found


def test_the_library_layers_parse_no_command_line():
    """Options are the CLI's: no click (and no argparse `main`) below it."""
    offenders = [f"{p.relative_to(REPO)}: {m}" for layer in LIBRARY for p in layer_files(layer)
                 for m in imported_modules(p) if m.split(".")[0] in ("click", "argparse", "getopt", "optparse")]
    assert offenders == []


def test_the_app_layer_returns_data_and_never_prints():
    offenders = [f"{p.relative_to(REPO)}: {what}" for p in layer_files("app") for what in printed_or_click(p)]
    assert offenders == []

"""Test helpers, importable from every test module (`from support import run_cli, AUDIO`): the checkout's paths,
the real CLI in a subprocess, the bundled real audio clips, CSV writing. Fixtures live in the conftest.py files;
what builds data for them (demo caches, tiny models, servers, dataset layouts) lives in this package's modules.

The package is importable as `support` (setup.cfg's pytest `pythonpath` holds tests/) and, for subprocesses that
only have the checkout on their path (`--objective tests.support.search_objectives:Quadratic`), as `tests.support`.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
AUDIO = DATA / "audio"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def cli_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def cli_cmd(*args: str) -> list[str]:
    """argv for `audioret ARGS` run from this checkout (`python -m audioret`)."""
    return [sys.executable, "-m", "audioret", *map(str, args)]


def run_cli(*args: str, check: bool = False, timeout: float = 300, env: dict | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run `audioret ARGS` in a real subprocess and capture its output."""
    proc = subprocess.run(cli_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=cli_env(env), cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"audioret {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def real_clips() -> list[Path]:
    return sorted(p for p in AUDIO.rglob("*") if p.suffix.lower() in {".mp3", ".flac", ".wav", ".ogg"})


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """A UTF-8 CSV as the csv module writes it (quoting commas, quotes and newlines)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path

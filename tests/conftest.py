"""Fixtures shared by every layer's tests (helpers to import are in tests/support/).

The one demo cache: a tiny generated Clotho-layout dataset (pipeline/demo_data.py) prepped by the real CLI into an
audio + captions cache named "demo", built once per test session. Tests read it as it is; a test that changes a
cache (damages a shard, adds a cache, gc's it) copies it first (shutil.copytree: milliseconds, where prepping takes
subprocesses), as tests/cli/test_integrity.py does. Training runs register themselves under the cache root's runs/,
which no test of the shared cache reads.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import AUDIO
from support.demo import build_demo_cache


@pytest.fixture(scope="session", autouse=True)
def _user_cache_in_tmp(tmp_path_factory) -> None:
    """Commands with a default user cache (`predict`, `retrieve --audio-dir`) write under pytest's temp dir, never
    into the home directory (subprocesses inherit it through cli_env)."""
    os.environ["AUDIORET_CACHE"] = str(tmp_path_factory.getbasetemp() / "user-cache")


@pytest.fixture
def audio_dir() -> Path:
    """Real CC0 / CC BY-SA clips (MP3, FLAC incl. stereo, 8 kHz WAV) with their licence files."""
    return AUDIO


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """Cache root holding the session's demo audio (PANNs log-mel) and captions caches, both named "demo";
    the dataset they were made from is `demo_cache.parent / "data"`. Read-only by convention."""
    return build_demo_cache(tmp_path_factory.getbasetemp())

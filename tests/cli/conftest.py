"""Fixtures of the end-to-end CLI tests (the shared demo cache is tests/conftest.py's)."""
from __future__ import annotations

from pathlib import Path

import pytest

from support import run_cli
from support.demo import fast_overrides
from support.three_datasets import three_caches as build_three_caches


@pytest.fixture(scope="session")
def demo_run(demo_cache, tmp_path_factory) -> Path:
    """A 1-epoch CNN10 run on the shared demo cache (the fast test config), trained once for the tests that only
    read a trained run (`predict`, `report`). keep_last: last.pt keeps its weights, so `--checkpoint last` loads.
    Tests add files to it (reports, evaluations) and never change what training wrote."""
    run = tmp_path_factory.mktemp("demo-run") / "run"
    run_cli("train", "--cache", demo_cache, "--name", "demo", "--out", run, *fast_overrides(1, ["keep_last=true"]),
            "--no-progress", check=True, timeout=900)  # seconds alone; minutes on a crowded 2-core machine
    return run


@pytest.fixture(scope="session")
def three_caches(tmp_path_factory) -> Path:
    """Cache root with the Clotho-, AudioCaps- and WavCaps-like caches "clotho", "audiocaps", "wavcaps"
    (support/three_datasets.py): the datasets one run of the DCASE 2025 recipe trains on together."""
    return build_three_caches(tmp_path_factory.getbasetemp())

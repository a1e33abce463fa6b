"""`audioret train --nproc N` (torch elastic launcher, gloo on CPU) and `--init-from RUN_DIR`, through the real CLI."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from conftest import run_cli
from demo_fixtures import demo_cache, fast_overrides


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return demo_cache(tmp_path_factory.getbasetemp(), "48,16,16", 1.5)


def rows(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_init_from_copies_the_source_runs_best_weights(cache, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    run_cli("train", "--cache", cache, "--name", "demo", "--out", src, *fast_overrides(1), "--no-progress", check=True)
    # 0 epochs of training is not allowed, so compare the init record and that training started from those weights
    run_cli("train", "--cache", cache, "--name", "demo", "--out", dst, "--init-from", src,
            *fast_overrides(1, ["lr=1e-12", "text_lr=0"]), "--no-progress", check=True)
    record = json.loads((dst / "init_from.json").read_text())
    assert str(src.resolve()) in json.dumps(record)
    assert f'init_from = "{src.resolve()}"' in (dst / "config.toml").read_text()
    a = torch.load(src / "checkpoints" / "best.pt", weights_only=True)["model"]
    b = torch.load(dst / "checkpoints" / "last.pt", weights_only=True)["model"]
    conv = "audio.conv_block1.conv1.weight"
    # lr 1e-12 barely moves the weights: the new run started from the source run's weights, not a fresh init
    assert torch.allclose(a[conv], b[conv], atol=1e-6)


def test_init_from_a_missing_run_is_a_one_line_error(cache, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("train", "--cache", cache, "--name", "demo", "--out", tmp_path / "x", "--init-from",
                   tmp_path / "empty", *fast_overrides(1), "--no-progress")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "empty" in proc.stderr


def test_nproc_2_on_cpu_writes_once_and_resumes(cache, tmp_path):
    run = tmp_path / "ddp"
    args = ("train", "--cache", cache, "--name", "demo", "--out", run, "--nproc", "2", "--no-progress")
    run_cli(*args, *fast_overrides(1, ["batch_size=4"]), check=True, timeout=600)
    assert [r["epoch"] for r in rows(run)] == ["1"]
    assert (run / "checkpoints" / "best.pt").exists() and (run / "checkpoints" / "last.pt").exists()
    run_cli(*args, "--resume", *fast_overrides(2, ["batch_size=4"]), check=True, timeout=600)
    assert [r["epoch"] for r in rows(run)] == ["1", "2"]

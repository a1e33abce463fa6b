"""`audioret train --nproc N` (torch elastic launcher, gloo on CPU) and `--init-from RUN_DIR`, through the real CLI."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from support import run_cli
from support.demo import fast_overrides

# --nproc 2 runs: a global batch of 8 (4 a rank), 15 steps an epoch of the demo's 120 captions (each an all-gather)
DDP_SETS = ["batch_size=8"]


def rows(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # CI time: tests/trainer/test_init_from.py covers --init-from in one process
def test_init_from_copies_the_source_runs_best_weights(demo_cache, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    run_cli("train", "--cache", demo_cache, "--name", "demo", "--out", src, *fast_overrides(1), "--no-progress",
            check=True)
    # 0 epochs of training is not allowed, so compare the init record and that training started from those weights
    run_cli("train", "--cache", demo_cache, "--name", "demo", "--out", dst, "--init-from", src,
            *fast_overrides(1, ["lr=1e-12", "text_lr=0"]), "--no-progress", check=True)
    record = json.loads((dst / "init_from.json").read_text())
    assert str(src.resolve()) in json.dumps(record)
    assert f'init_from = "{src.resolve()}"' in (dst / "config.toml").read_text()
    a = torch.load(src / "checkpoints" / "best.pt", weights_only=True)["model"]
    b = torch.load(dst / "checkpoints" / "best.pt", weights_only=True)["model"]
    conv = "audio.conv_block1.conv1.weight"
    # lr 1e-12 barely moves the weights: the new run started from the source run's weights, not a fresh init
    assert torch.allclose(a[conv], b[conv], atol=1e-6)


def test_init_from_a_missing_run_is_a_one_line_error(demo_cache, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("train", "--cache", demo_cache, "--name", "demo", "--out", tmp_path / "x", "--init-from",
                   tmp_path / "empty", *fast_overrides(1), "--no-progress")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "empty" in proc.stderr


def test_nproc_2_on_cpu_writes_once_and_resumes_bit_exact(demo_cache, tmp_path):
    """2 ranks (gloo): rank 0 alone writes; the checkpoint holds every rank's RNG states, so a run interrupted
    after epoch 1 and resumed ends with exactly the parameters of an uninterrupted run (dropout draws differ per
    rank: restoring rank 0's states on rank 1 would change them)."""
    run, ref = tmp_path / "ddp", tmp_path / "ref"
    train = ("train", "--cache", demo_cache, "--name", "demo", "--nproc", "2", "--no-progress",
             "--set", "keep_last=true")
    run_cli(*train, "--out", run, *fast_overrides(1, DDP_SETS), check=True, timeout=600)
    assert [r["epoch"] for r in rows(run)] == ["1"]
    assert (run / "checkpoints" / "best.pt").exists() and (run / "checkpoints" / "last.pt").exists()
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert len(saved["rng_ranks"]) == 2
    assert not torch.equal(saved["rng_ranks"][0]["torch"], saved["rng_ranks"][1]["torch"])
    run_cli(*train, "--out", run, "--resume", *fast_overrides(2, DDP_SETS), check=True, timeout=600)
    assert [r["epoch"] for r in rows(run)] == ["1", "2"]

    run_cli(*train, "--out", ref, *fast_overrides(2, DDP_SETS), check=True, timeout=600)
    got = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    want = torch.load(ref / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert got.keys() == want.keys()
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"resumed run differs from the uninterrupted one in {len(differ)} tensors, e.g. {differ[:3]}"
    assert [r["loss"] for r in rows(run)] == [r["loss"] for r in rows(ref)]


def test_rank_rng_restore_and_world_size_change(tmp_path):
    """Each rank restores its own saved states; a checkpoint from another world size warns and re-seeds each rank
    deterministically (no crash); the states survive a weights_only save/load."""
    from audioret.trainer.checkpoint import gather_rank_rng, load_checkpoint, restore_rank_rng, save_checkpoint

    gen = torch.Generator()
    states = []
    for r in range(2):  # what two ranks seeded seed + rank would save
        torch.manual_seed(r)
        gen.manual_seed(100 + r)
        states.append(gather_rank_rng({"augment": gen})[0])
    save_checkpoint(tmp_path / "last.pt", {"rng": states[0], "rng_ranks": states})
    saved = load_checkpoint(tmp_path / "last.pt")  # weights_only=True

    assert restore_rank_rng(saved, {"augment": gen}, rank=1, world_size=2, seed=0, epoch=3) is None
    assert torch.equal(torch.get_rng_state(), states[1]["torch"])
    assert torch.equal(gen.get_state(), states[1]["generators"]["augment"])
    draws = []
    for rank in (0, 1, 0):
        warning = restore_rank_rng(saved, {"augment": gen}, rank=rank, world_size=3, seed=0, epoch=3)
        assert warning.startswith("warning: checkpoint RNG states are from 2 rank(s), resuming with 3")
        draws.append((torch.rand(1).item(), torch.rand(1, generator=gen).item()))
    assert draws[0] == draws[2] != draws[1]  # deterministic per rank, different across ranks

    old = {"rng": states[1]}  # a single-process checkpoint from before rng_ranks
    assert restore_rank_rng(old, None, rank=0, world_size=1, seed=0, epoch=1) is None
    assert torch.equal(torch.get_rng_state(), states[1]["torch"])

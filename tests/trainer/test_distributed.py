"""DDP contrastive loss on CPU/gloo with 2 real processes: gradients must equal one process on the full batch.

The local-only loss (each rank contrasts only its own B pairs) is run too and must *differ*, so the equality test
would catch a missing gather, a wrong label offset or a wrong loss scale.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from audioret.trainer import distributed as D
from audioret.trainer import loss_distributed as LD
from support.ddp import WORLD, reserved_port, stream_worker

GLOBAL_BATCH = 8
# Clip indices with duplicates inside a rank (0,0) and across ranks (3 on both) for the same-clip mask.
CLIPS = [0, 0, 1, 3, 2, 3, 4, 5]
MODES = ("plain", "masked", "local-only")


class TinyBiEncoder(nn.Module):
    """Two Linear encoders + learnable logit scale: the smallest model with the trainer's forward signature."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.audio = nn.Linear(8, 4)
        self.text = nn.Linear(6, 4)
        self.log_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, a: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return F.normalize(self.audio(a), dim=-1), F.normalize(self.text(t), dim=-1), self.log_scale.exp()


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(GLOBAL_BATCH, 8, generator=g), torch.randn(GLOBAL_BATCH, 6, generator=g),
            torch.tensor(CLIPS))


def _grads(model: nn.Module) -> dict[str, np.ndarray]:
    return {n: p.grad.detach().numpy().copy() for n, p in D.unwrap(model).named_parameters()}


def _reference(mask: bool) -> dict[str, np.ndarray]:
    """One process, full global batch, plain N×N symmetric loss."""
    model = TinyBiEncoder()
    a, t, clips = _data()
    ea, et, scale = model(a, t)
    c = clips if mask else None
    LD.local_block_loss(ea, et, ea, et, scale, 0, c, c).backward()
    return _grads(model)


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One rank: every loss mode in turn on a fresh DDP model (one spawn, so torch imports once per rank)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = D.init_distributed()
    assert info.enabled and info.rank == rank and info.backend == "gloo"
    a, t, clips = _data()
    per = GLOBAL_BATCH // WORLD
    sl = slice(rank * per, (rank + 1) * per)
    for mode in MODES:
        model = D.wrap_model(TinyBiEncoder())
        ea, et, scale = model(a[sl], t[sl])
        if mode == "local-only":
            loss = LD.local_block_loss(ea, et, ea, et, scale, 0)
        else:
            loss = LD.distributed_nt_xent(ea, et, scale, clips[sl] if mode == "masked" else None)
        loss.backward()
        mean_loss = D.all_reduce_mean(float(loss.detach()))
        if D.is_main_process():
            np.savez(os.path.join(out_dir, f"{mode}.npz"), loss=np.array(mean_loss), **_grads(model))
    D.barrier()
    D.cleanup()


@pytest.fixture(scope="module")
def ranked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    """Gradients seen by rank 0 (after DDP averaging) per loss mode, from 2 real gloo processes."""
    out = tmp_path_factory.mktemp("ddp")
    with reserved_port() as port:
        mp.spawn(_worker, args=(port, str(out)), nprocs=WORLD, join=True)
    result = {}
    for mode in MODES:
        with np.load(out / f"{mode}.npz") as z:
            result[mode] = {k: z[k] for k in z.files}
    return result


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in b)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["plain", "masked"])
def test_gather_loss_gradients_match_single_process(ranked: dict, mode: str) -> None:
    masked = mode == "masked"
    ref = _reference(masked)
    got = ranked[mode]
    assert _max_diff(got, ref) < 1e-5
    # The mean of the rank losses is the global-batch loss (logging the all-reduced mean is meaningful).
    model = TinyBiEncoder()
    a, t, clips = _data()
    ea, et, scale = model(a, t)
    c = clips if masked else None
    expected = float(LD.local_block_loss(ea, et, ea, et, scale, 0, c, c).detach())
    assert float(got["loss"]) == pytest.approx(expected, abs=1e-5)


@pytest.mark.timeout(120)
def test_local_only_loss_gives_different_gradients(ranked: dict) -> None:
    assert _max_diff(ranked["local-only"], _reference(False)) > 1e-3


def test_mask_changes_the_loss() -> None:
    """The same-clip mask must matter on this data, or the masked case above would prove nothing extra."""
    model = TinyBiEncoder()
    a, t, clips = _data()
    ea, et, scale = model(a, t)
    plain = LD.local_block_loss(ea, et, ea, et, scale, 0)
    masked = LD.local_block_loss(ea, et, ea, et, scale, 0, clips, clips)
    assert abs(float(plain.detach()) - float(masked.detach())) > 1e-4


def test_single_process_is_a_no_op() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    assert LD.gather_with_grad(x) is x
    assert D.is_main_process() and D.get_world_size() == 1
    assert D.broadcast_object({"stop": True}) == {"stop": True}
    model = nn.Linear(2, 2)
    assert D.wrap_model(model) is model


def test_env_world_torchrun_slurm_and_plain() -> None:
    assert D.env_world({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == D.DistInfo(3, 4, 1)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    assert D.env_world(slurm) == D.DistInfo(5, 8, 1)
    assert not D.env_world({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).enabled  # sbatch with one task
    assert D.env_world({**slurm, "RANK": "0", "WORLD_SIZE": "2"}) == D.DistInfo(0, 2, 0)  # torchrun wins
    assert not D.launched_distributed({})


def test_first_slurm_host() -> None:
    assert D.first_slurm_host("gpu[003-004,9],cpu1") == "gpu003"
    assert D.first_slurm_host("node7,node8") == "node7"
    assert D.first_slurm_host("a-b[12]") == "a-b12"


def test_sharded_batch_sampler_partitions_global_batches() -> None:
    class Base:
        def __init__(self) -> None:
            self.epoch = 0

        def set_epoch(self, e: int) -> None:
            self.epoch = e

        def __iter__(self):
            perm = torch.randperm(11, generator=torch.Generator().manual_seed(self.epoch)).tolist()
            return iter([perm[i:i + 4] for i in range(0, 11, 4)])  # 4, 4, 3

        def __len__(self) -> int:
            return 3

    ranks = [D.ShardedBatchSampler(Base(), r, 2) for r in range(2)]
    for epoch in (0, 1):
        for s in ranks:
            s.set_epoch(epoch)
        per_rank = [list(s) for s in ranks]
        glob = list(Base.__iter__(type("B", (), {"epoch": epoch})()))
        for step, batch in enumerate(glob):
            per = len(batch) // 2
            assert per_rank[0][step] + per_rank[1][step] == batch[:2 * per]  # last batch trimmed to 2
            assert len(per_rank[0][step]) == len(per_rank[1][step])
    with pytest.raises(ValueError):
        D.ShardedBatchSampler(Base(), 2, 2)


def test_shard_plan_splits_global_batches_and_decorrelates_seeds() -> None:
    from dataclasses import dataclass

    @dataclass
    class Plan:  # the fields of trainer.data.EpochPlan that sharding touches
        batches: list
        starts: np.ndarray
        sizes: np.ndarray
        seeds: list

    plan = Plan([np.arange(0, 6), np.arange(6, 9), np.arange(9, 10)], np.zeros(10), np.ones(10), [7, 8, 9])
    parts = [D.shard_plan(plan, r, 2) for r in range(2)]
    assert [b.tolist() for b in parts[0].batches] == [[0, 2, 4], [6]]  # interleaved; 3 rows → 1 each, 1 → dropped
    assert [b.tolist() for b in parts[1].batches] == [[1, 3, 5], [7]]
    assert parts[0].seeds != parts[1].seeds and len(parts[0].seeds) == 2
    assert parts[0].starts is plan.starts  # crops are per row: unchanged
    assert D.shard_plan(plan, 0, 1) is plan and D.shard_plan(plan, 0, 1, "contiguous") is plan  # one rank: as is
    blocks = [D.shard_plan(plan, r, 2, "contiguous") for r in range(2)]  # a run from before: its resumes
    assert [b.tolist() for b in blocks[0].batches] == [[0, 1, 2], [6]]
    assert [b.tolist() for b in blocks[1].batches] == [[3, 4, 5], [7]]
    assert blocks[0].seeds == parts[0].seeds
    assert D.recorded_slices({"rank_slices": "interleaved"}) == "interleaved"
    assert D.recorded_slices({"audio_key": "..."}) == "contiguous"  # run.json of a run started before


def test_ranks_get_the_same_dataset_mix_from_a_plan_with_deferred_rows() -> None:
    """The per-rank dataset mix as a function of the plan alone: a Clotho-like dataset (5 captions a clip, so its
    rows are the deferred ones that open a planned batch) beside an AudioCaps-like one (1 caption a clip). Contiguous
    slices gave rank 0 most of the deferred rows; interleaved ones spread them (20 epochs, W = 2, 4, 8)."""
    from audioret.trainer.data import EpochPlan, plan_batches

    clips = np.concatenate([np.repeat(np.arange(40), 5), 40 + np.arange(200)])
    five_captions = np.arange(len(clips)) < 200
    for world in (2, 4, 8):
        spread = {}
        for slices in D.RANK_SLICES:
            per_rank = np.zeros(world, dtype=np.int64)
            for epoch in range(20):
                batches = plan_batches(clips, 8 * world, np.random.default_rng(epoch))
                rows = np.arange(len(clips))
                plan = EpochPlan(batches, np.zeros_like(rows), np.zeros_like(rows), [0] * len(batches), rows)
                for r in range(world):
                    sharded = D.shard_plan(plan, r, world, slices)
                    per_rank[r] += sum(int(five_captions[b].sum()) for b in sharded.batches)
            spread[slices] = (per_rank.max() - per_rank.min()) / per_rank.mean()
        assert spread["interleaved"] < 0.2 and spread["interleaved"] * 3 < spread["contiguous"], (world, spread)


def test_each_rank_streams_only_its_own_slices_of_one_epoch(demo_cache: Path,
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """2 gloo ranks, streamed mode: what each rank reads from the shards is exactly its slices of the global
    plan; together the ranks read one epoch with no row twice, less the rows a global batch that does not split
    evenly over the ranks loses (equal slices are needed for the all-gather)."""
    out = tmp_path_factory.mktemp("ddp-stream")
    with reserved_port() as port:
        mp.spawn(stream_worker, args=(port, str(demo_cache), str(out)), nprocs=WORLD, join=True)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0]["global"] == ranks[1]["global"]  # every rank plans the same global epoch
    for r in ranks:
        assert r["read"] == [r["clip_pos"][row] for row in r["rows"]]  # reads = own rows, in order, nothing else
    assert ranks[0]["n_batches"] == ranks[1]["n_batches"] > 0
    assert not set(ranks[0]["rows"]) & set(ranks[1]["rows"])
    every_row = [row for b in ranks[0]["global"] for row in b]
    trimmed = [row for b in ranks[0]["global"] for row in b[len(b) // WORLD * WORLD:]]
    assert sorted(every_row) == list(range(len(ranks[0]["clip_pos"])))
    assert sorted(ranks[0]["rows"] + ranks[1]["rows"]) == sorted(set(every_row) - set(trimmed))
    assert len(trimmed) < len(every_row) // 10

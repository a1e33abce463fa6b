"""Optional multi-process (DDP) training support, kept out of the single-process trainer's way.

Why a module of its own: a one-GPU run must not pay for (or be able to break on) process groups, so everything here
is a no-op when the world size is 1 and the trainer calls only a handful of hooks. The global-batch contrastive
loss (all-gather with gradient, local rows against the global batch) sits beside the loss, in
trainer/loss_distributed.py. Starting ranks: audioret/cli/launch.py.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

#: Environment variables that mean "a launcher started this process as one rank of several".
TORCHRUN_VARS = ("RANK", "WORLD_SIZE")
SLURM_VARS = ("SLURM_PROCID", "SLURM_NTASKS")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job. `enabled` is False for a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_slurm_host(nodelist: str) -> str:
    """First host of a SLURM node list ("gpu[003-004,9],cpu1" → "gpu003"), so MASTER_ADDR needs no scontrol."""
    first = re.split(r",(?![^\[]*\])", nodelist.strip())[0]
    m = re.match(r"^([^\[]*)\[([^\]]*)\]", first)
    if not m:
        return first
    return m.group(1) + re.split(r"[,-]", m.group(2))[0]


def env_world(environ: dict[str, str] | None = None) -> DistInfo:
    """Rank, world size and local rank from torchrun's variables, else SLURM's (srun one task per GPU), else 1.

    torchrun wins when both are present (torchrun inside a SLURM allocation is the common multi-node recipe).
    """
    env = os.environ if environ is None else environ
    if all(v in env for v in TORCHRUN_VARS):
        return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
    if all(v in env for v in SLURM_VARS) and int(env["SLURM_NTASKS"]) > 1:
        return DistInfo(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", "0")))
    return DistInfo()


def launched_distributed(environ: dict[str, str] | None = None) -> bool:
    """True when a launcher (torchrun, SLURM srun) already made this process one of several ranks."""
    return env_world(environ).enabled


_INFO = DistInfo()


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0, device: str = "auto") -> DistInfo:
    """Join the process group described by the environment (no-op for one process); returns this rank's info.

    SLURM jobs get MASTER_ADDR from the first node of SLURM_JOB_NODELIST and a job-specific MASTER_PORT when the
    batch script did not export them. On CUDA the rank uses GPU LOCAL_RANK with NCCL; otherwise (no GPU, or
    `device="cpu"`) gloo.
    """
    global _INFO
    info = env_world()
    if not info.enabled:
        _INFO = info
        return info
    if dist.is_initialized():
        _INFO = DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank, dist.get_backend())
        return _INFO
    if "MASTER_ADDR" not in os.environ:
        nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
        os.environ["MASTER_ADDR"] = first_slurm_host(nodelist) if nodelist else "127.0.0.1"
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(20000 + int(os.environ.get("SLURM_JOB_ID", "9500")) % 20000)
    use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
    backend = backend or ("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
    from datetime import timedelta

    dist.init_process_group(backend=backend, init_method="env://", rank=info.rank,
                            world_size=info.world_size, timeout=timedelta(seconds=timeout_s))
    _INFO = DistInfo(info.rank, info.world_size, info.local_rank, backend)
    return _INFO


def current() -> DistInfo:
    """This process's `DistInfo` (after `init_distributed`; single-process defaults before)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _INFO.local_rank, dist.get_backend())
    return DistInfo()


def get_rank() -> int:
    return current().rank


def get_world_size() -> int:
    return current().world_size


def is_main_process() -> bool:
    """Only rank 0 writes checkpoints, metrics and logs; every other rank computes and stays silent."""
    return current().is_main


def device_for_rank(requested: str) -> torch.device:
    """"cuda" becomes "cuda:LOCAL_RANK" in a distributed run, so ranks never share a GPU by accident."""
    dev = torch.device(requested)
    info = current()
    if dev.type == "cuda" and dev.index is None and info.enabled:
        return torch.device("cuda", info.local_rank % max(1, torch.cuda.device_count()))
    return dev


def barrier() -> None:
    """Wait for every rank (no-op for one process); e.g. while rank 0 evaluates or writes a checkpoint."""
    if current().enabled:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s value on every rank (JSON-like objects), so decisions such as early stopping stay in step."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(value: float) -> float:
    """Mean of a Python float over ranks (for logging the global training loss)."""
    if not current().enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64,
                     device="cuda" if current().backend == "nccl" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / current().world_size


def cleanup() -> None:
    """Leave the process group so the launcher sees a clean exit."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, device: torch.device | None = None) -> nn.Module:
    """DDP-wrap `model` for a distributed run (identity otherwise). Call the wrapper's forward, not submethods.

    `find_unused_parameters=True` because a pretrained text model may carry parameters the [CLS] head never
    uses (BERT's pooler); without it DDP stalls waiting for their gradients. Save `unwrap(model)` weights.
    """
    if not current().enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device is not None and device.type == "cuda" and device.index is not None else None
    return DDP(model, device_ids=ids, find_unused_parameters=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (its state_dict keys carry no `module.` prefix)."""
    return getattr(model, "module", model)


def rank_slice(batch: Sequence[Any], rank: int, world_size: int, interleaved: bool = False) -> Sequence[Any] | None:
    """Rank's equal share of one global batch (trimmed to a multiple of W); None when shorter than W.

    Contiguous: rows rank·per … (rank+1)·per − 1. Interleaved: rows rank, rank + W, rank + 2W, …, so a run of
    similar rows (the deferred rows a planned batch starts with: trainer/data.py plan_batches) spreads over all
    ranks instead of landing on rank 0."""
    per = len(batch) // world_size
    if not per:
        return None
    return batch[:per * world_size][rank::world_size] if interleaved else batch[rank * per:(rank + 1) * per]


def global_batch_size(per_rank: int) -> int:
    """Pairs per optimisation step over all ranks: `batch_size` in the config is per rank (issue 6)."""
    return per_rank * current().world_size


#: How a planned global batch is split over the ranks: `interleaved` since issue 22 (rank r takes rows r, r+W, …:
#: deferred rows, mostly of multi-caption datasets, no longer all go to rank 0, whose BatchNorm statistics then saw
#: another dataset mix); `contiguous` for runs started before, so that their resumes stay bit-exact (run.json).
RANK_SLICES = ("interleaved", "contiguous")


def recorded_slices(run_info: dict) -> str:
    """The rank slicing a run uses (RANK_SLICES), from its run.json: what it recorded, or `contiguous` for a run
    from before the slicing was recorded (its resumes replay the slices its first epochs had)."""
    return str(run_info.get("rank_slices", "contiguous"))


def shard_plan(plan: Any, rank: int | None = None, world_size: int | None = None,
               slices: str = "interleaved") -> Any:
    """This rank's part of a trainer epoch plan built for the *global* batch size (trainer.data.EpochPlan).

    Batches become equal per-rank slices (`slices`: see RANK_SLICES); per-row crops stay as planned; the
    text-augmentation seed of each batch is mixed with the rank so ranks do not draw identical
    EDA/back-translation decisions for their slices.
    """
    if slices not in RANK_SLICES:
        raise ValueError(f"rank slices {slices!r}: expected one of {', '.join(RANK_SLICES)}")
    import dataclasses

    import numpy as np

    rank = current().rank if rank is None else rank
    world_size = current().world_size if world_size is None else world_size
    if world_size == 1:
        return plan
    batches, seeds = [], []
    for batch, seed in zip(plan.batches, plan.seeds, strict=False):
        part = rank_slice(batch, rank, world_size, slices == "interleaved")
        if part is not None:
            batches.append(part)
            seeds.append(int(np.random.SeedSequence([int(seed), rank]).generate_state(1, dtype=np.uint64)[0]))
    return dataclasses.replace(plan, batches=batches, seeds=seeds)


def shard_train_data(data: Any, slices: str = "interleaved") -> Any:
    """Make a `trainer.data.TrainData` (built with `global_batch_size`) yield only this rank's slices (`slices`:
    RANK_SLICES).

    The one hook the loop needs for data: `TrainData.epoch()` and `n_batches()` call `self.plan(epoch)`, so
    wrapping that method on the instance shards every epoch (set_epoch semantics: the plan is a function of
    (seed, epoch), identical on all ranks before slicing). No-op for one process.
    """
    if not current().enabled:
        return data
    unsharded = data.plan
    data.plan = lambda epoch: shard_plan(unsharded(epoch), slices=slices)
    return data


class ShardedBatchSampler:
    """Split each *global* batch of a base batch sampler into equal per-rank slices.

    Why global batches: every rank builds the same permutation (same seed, `set_epoch(e)` → same epoch), so the
    W ranks together see exactly the batches a single process with batch W·B would see. Slices must have equal
    sizes for the all-gather, so a last global batch that does not split evenly is trimmed to a multiple of W
    (dropped if shorter than W). `set_epoch` is forwarded like `DistributedSampler.set_epoch`.
    """

    def __init__(self, base: Iterable[Sequence[int]], rank: int | None = None,
                 world_size: int | None = None) -> None:
        self.base = base
        self.rank = current().rank if rank is None else rank
        self.world_size = current().world_size if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.base:
            part = rank_slice(list(batch), self.rank, self.world_size)
            if part is not None:
                yield part

    def __len__(self) -> int:
        """Steps per epoch (the base's batch count; one less only if its last batch is shorter than W)."""
        return len(self.base)  # type: ignore[arg-type]

"""Checkpoints that load with `torch.load(weights_only=True)` and are published atomically.

Why no pickled objects: a checkpoint from elsewhere must not be able to run code when loaded, so everything in it
is a tensor, a number, a string, a list or a dict. RNG states are converted accordingly (numpy's MT19937 key and
Python's Mersenne state become int64 tensors). A distributed run stores every rank's RNG states (`rng_ranks`,
gathered to rank 0, who alone writes): ranks draw different dropout masks, so restoring rank 0's states on every
rank would make a resumed run diverge from an uninterrupted one. Written through `cache.publish.publish_file`,
so a run killed while saving leaves the previous checkpoint intact, never a torn file.
"""
from __future__ import annotations

import random
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache.publish import publish_file

CHECKPOINT_DIR = "checkpoints"


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Global torch / CUDA / numpy / Python RNG states (plus named torch generators) as plain tensors and lists."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of `rng_state` (CUDA states only when CUDA is present with the same device count)."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for k, g in (generators or {}).items():
        if k in state.get("generators", {}):
            g.set_state(state["generators"][k].cpu())


def gather_rank_rng(generators: dict[str, torch.Generator] | None = None) -> list[dict[str, Any]]:
    """Every rank's `rng_state`, in rank order, on every rank ([own state] for one process).

    A collective: all ranks must call it at the same point of the epoch. Objects go over the process group (only
    plain tensors, numbers, lists and dicts), so the checkpoint stays loadable with weights_only=True.
    """
    from trainer.distributed import current

    own = rng_state(generators)
    info = current()
    if not info.enabled:
        return [own]
    states: list[Any] = [None] * info.world_size
    torch.distributed.all_gather_object(states, own)
    return states


def restore_rank_rng(state: dict[str, Any], generators: dict[str, torch.Generator] | None, rank: int,
                     world_size: int, seed: int, epoch: int) -> str | None:
    """Restore this rank's RNG states from a checkpoint; returns a warning line when that cannot be exact.

    A checkpoint written by another number of ranks (or before `rng_ranks` existed, by several ranks) holds no
    state for this rank: the rank is re-seeded from (seed, epoch, rank) instead — deterministic, so two resumes
    agree with each other, but not bit-exact with an uninterrupted run. Never a crash: changing the GPU count
    of a long run on resume is legitimate.
    """
    ranks = state.get("rng_ranks") or [state["rng"]]
    if len(ranks) == world_size:
        set_rng_state(ranks[rank], generators)
        return None
    s = int(np.random.SeedSequence([int(seed), int(epoch), int(rank), 0x5EED]).generate_state(1, np.uint64)[0] >> 1)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)
    for i, g in enumerate((generators or {}).values()):
        g.manual_seed(s + 1 + i)
    return (f"warning: checkpoint RNG states are from {len(ranks)} rank(s), resuming with {world_size}: each rank "
            f"re-seeded from (seed, epoch, rank); the run is reproducible but not bit-exact with an uninterrupted one")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write `payload` (+ a fresh `token` identifying this save, used to key embedding caches)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(payload, token=secrets.token_hex(8))

    def write(tmp: Path) -> None:
        torch.save(payload, tmp)
    return publish_file(path, write)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True; a clear one-line error for a missing or unreadable file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / foreign files
        raise RuntimeError(f"{path}: cannot load checkpoint ({str(exc).splitlines()[0][:200]})") from exc


def checkpoint_path(run_dir: str | Path, which: str) -> Path:
    if which not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', not {which!r}")
    return Path(run_dir) / CHECKPOINT_DIR / f"{which}.pt"

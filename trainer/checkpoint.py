"""Checkpoints that load with `torch.load(weights_only=True)` and are published atomically.

Why no pickled objects: a checkpoint from elsewhere must not be able to run code when loaded, so everything in it
is a tensor, number, string, list or dict (RNG states converted to tensors; every rank's states in a distributed
run, so a resume does not diverge). Written through `cache.publish.publish_file`, so a kill while saving keeps the
previous file. What last.pt and best.pt hold, and why: docs/training.md.
"""
from __future__ import annotations

import hashlib
import random
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioret.cache.publish import publish_file

RUN_INFO = "run.json"  # RUN_DIR/run.json: the caches a run reads (by key), written when it starts
CHECKPOINT_DIR = "checkpoints"
TEXT_PREFIX = "text.transformer."  # BiEncoder state-dict keys of the pretrained text transformer
RUN_STATE_KEYS = ("epoch", "config", "best_map10", "best_epoch", "bad_epochs", "val", "stopped", "frozen_text")
REMOVED_NOTE = "REMOVED.txt"  # why a run's weights were deleted (search --keep-best), read by load_checkpoint


class CheckpointError(RuntimeError):
    """A checkpoint without the weights asked for, or whose text encoder stored by name no longer matches."""


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
    from audioret.trainer.distributed import current

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


def removed_reason(path: Path) -> str:
    """" (<why>)" when search --keep-best deleted the weights next to `path` (its REMOVED.txt), else ""."""
    note = path.parent / REMOVED_NOTE
    return f" ({note.read_text(encoding='utf-8').strip()})" if note.is_file() else ""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True; a clear one-line error for a missing or unreadable file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found{removed_reason(path)}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / foreign files
        raise RuntimeError(f"{path}: cannot load checkpoint ({str(exc).splitlines()[0][:200]})") from exc


def checkpoint_path(run_dir: str | Path, which: str) -> Path:
    if which not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', not {which!r}")
    return Path(run_dir) / CHECKPOINT_DIR / f"{which}.pt"


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes, bytes): identifies a set of weights."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def frozen_text_record(model: torch.nn.Module, text_model: str, pretrained_sha256: str | None) -> dict | None:
    """{"text_model", "sha256"} when the text transformer may be stored by name: it is frozen (the caller passes
    the sha256 taken right after `text_model` was loaded, None when text_lr > 0) and still holds exactly those
    weights (an --init-from source may have replaced them with fine-tuned ones: then they are copied)."""
    if pretrained_sha256 is None or weights_sha256(model.text.transformer) != pretrained_sha256:
        return None
    return {"text_model": str(text_model), "sha256": pretrained_sha256}


def finished_state(payload: dict[str, Any]) -> dict[str, Any]:
    """What last.pt keeps of a finished run: where it ended and how (what a resume needs to say "finished" and
    return its summary), no weights, no optimiser."""
    return {**{k: payload[k] for k in RUN_STATE_KEYS if k in payload}, "finished": True}


def model_weights(model: torch.nn.Module, frozen_text: dict | None) -> dict[str, torch.Tensor]:
    """The state dict to save: without the text transformer when it is stored by name."""
    state = model.state_dict()
    if frozen_text:
        state = {k: v for k, v in state.items() if not k.startswith(TEXT_PREFIX)}
    return state


def full_model_state(model: torch.nn.Module, payload: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's complete state dict for `model`: a text transformer stored by name is taken from `model`
    itself, after checking that `model` loaded the very weights the run trained with."""
    state = payload.get("model")
    if not isinstance(state, dict):
        why = ("the run finished and last.pt keeps no weights (keep_last=false); use the best checkpoint"
               if payload.get("finished") else "no 'model' state dict in the checkpoint")
        raise CheckpointError(f"{path}: {why}")
    record = payload.get("frozen_text")
    if record:
        got = weights_sha256(model.text.transformer)
        if got != record["sha256"]:
            raise CheckpointError(
                f"{path}: the frozen text encoder is stored by name ({record['text_model']}), and this model's "
                f"text transformer has other weights (sha256 {got[:12]}, trained with {record['sha256'][:12]}); "
                f"load it with the same text_model")
        own = model.text.transformer.state_dict()
        state = {**{TEXT_PREFIX + k: v for k, v in own.items()}, **state}
    return state


def load_model_state(model: torch.nn.Module, payload: dict[str, Any], path: str | Path) -> None:
    """Load a checkpoint's weights into `model` (strict; text encoder stored by name: see `full_model_state`)."""
    model.load_state_dict(full_model_state(model, payload, path))


def drop_weights(run_dir: str | Path, reason: str) -> bool:
    """Delete a finished run's weights (best.pt; last.pt too if it still holds any) and note why; True if
    anything was deleted. The run's config, metrics and summary stay, and so does a weightless last.pt: a
    resume still sees the run as finished."""
    ckpt = Path(run_dir) / CHECKPOINT_DIR
    best, last = ckpt / "best.pt", ckpt / "last.pt"
    if (ckpt / REMOVED_NOTE).exists() or not best.exists():
        return False
    publish_file(ckpt / REMOVED_NOTE, lambda tmp: tmp.write_text(reason + "\n", encoding="utf-8"))
    if last.exists():
        state = load_checkpoint(last)
        if "model" in state:
            save_checkpoint(last, finished_state(state))
    best.unlink()
    return True

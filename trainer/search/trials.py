"""What runs on a worker for one trial (search) or one variant × seed (sweep), and the real training objective.

Why separate from the drivers: these functions are pickled to worker processes (local spawn pool or Dask), so
they are small top-level objects. The objective contract is `objective(params, trial_dir) -> dict` of numbers; the
CLI passes `TrainObjective`. A trial never raises to the driver: errors come back as {"error": ...}, so one bad
trial cannot take the search down.
"""
from __future__ import annotations

import math
import time
import traceback
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from audioret.cache.locks import CacheLock

Objective = Callable[[dict[str, Any], Path], dict[str, Any]]


def plain_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """Keep the JSON-able scalars of an objective's result (numpy scalars cast, NaN/inf dropped)."""
    out: dict[str, Any] = {}
    for k, v in (result or {}).items():
        v = v.item() if hasattr(v, "item") and not isinstance(v, (list, dict, str)) else v
        if isinstance(v, bool) or isinstance(v, (int, str)):
            out[str(k)] = v
        elif isinstance(v, float) and math.isfinite(v):
            out[str(k)] = v
    return out


def run_trial(objective: Objective, params: dict[str, Any], trial_dir: str, lock_dir: str) -> dict[str, Any]:
    """Run one trial in its run dir under a per-trial lock; return {"metrics", "wall_s"} or {"error", ...}.

    The lock makes a re-queued trial wait while an orphan of a killed driver (a Dask task the scheduler could not
    stop) still writes the same run dir; the kernel drops it when its holder dies.
    """
    start = time.monotonic()
    try:
        with CacheLock(lock_dir, wait=None):
            Path(trial_dir).mkdir(parents=True, exist_ok=True)
            result = objective(params, Path(trial_dir))
        return {"metrics": plain_metrics(result), "wall_s": time.monotonic() - start}
    except BaseException as exc:  # noqa: BLE001 - reported, never re-raised into the driver
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.format_exc(limit=-3)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"error": f"{type(exc).__name__}: {first}".rstrip(": "), "traceback": tb,
                "wall_s": time.monotonic() - start}


def result_of(fut: Future) -> dict[str, Any]:
    """The run's own report, or the executor's failure as an error report (never raises).

    Why here: `run_trial` never raises, so an exception from the future is infrastructure — a pool worker that
    died (OOM kill, kill -9: every run that pool held is lost) or a lost Dask worker; the drivers journal it as a
    failed run and go on.
    """
    try:
        return fut.result()
    except BaseException as exc:  # noqa: BLE001 - becomes a failed run
        msg = f"{type(exc).__name__}: {str(exc).strip()}".rstrip(": ")
        if isinstance(exc, BrokenExecutor):
            msg = f"worker process died (killed, e.g. out of memory?); run lost: {msg}"
        return {"error": msg, "wall_s": None}


@dataclass(frozen=True)
class TrainObjective:
    """The real objective: one `trainer.loop.train` run; the search minimises −best validation mAP@10.

    A trial dir that already holds a checkpoint is resumed (`resume=True`), so a re-queued trial continues
    where the killed driver left it instead of starting over.
    """

    cache_root: str
    name: str | None = None
    base_config: str | None = None
    overrides: tuple[str, ...] = ()
    audio_key: str | None = None
    caption_key: str | None = None
    evaluate_split: str | None = None  # sweeps: also evaluate the best checkpoint on this split
    progress: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def config(self, params: dict[str, Any]) -> Any:
        """Base config ← fixed overrides ← this trial's params, validated by trainer.config (ConfigError)."""
        from audioret.trainer.config import load_config

        return load_config(self.base_config, [*self.overrides, *(f"{k}={v}" for k, v in params.items())])

    def __call__(self, params: dict[str, Any], trial_dir: Path) -> dict[str, Any]:
        from audioret.trainer.loop import train

        trial_dir = Path(trial_dir)
        resume = (trial_dir / "checkpoints" / "last.pt").exists()
        result = dict(train(self.config(params), Path(self.cache_root), self.name, trial_dir, resume=resume,
                            audio_key=self.audio_key, caption_key=self.caption_key, progress=self.progress))
        if self.evaluate_split:
            from audioret.trainer.evaluate import evaluate_run

            ev = evaluate_run(trial_dir, split=self.evaluate_split, checkpoint="best")
            result.update({f"eval_{k}": v for k, v in plain_metrics(ev).items()})
        return result


def train_objective(cache_root: Path, name: str | None = None, config: Path | None = None,
                    overrides: tuple[str, ...] = (), audio_key: str | None = None, caption_key: str | None = None,
                    evaluate_split: str | None = None) -> tuple[TrainObjective, str]:
    """The training objective of a search or sweep, and the identity string its journal checks on resume.

    The identity names what a resume must match: the caches, the split scored, and the base config's content (not
    just its path). Unknown keys, bad values or a missing audio checkpoint raise ConfigError before any trial.
    """
    from audioret.cache.keys import sha256_file
    from audioret.trainer.config import check_audio_checkpoint, load_config

    check_audio_checkpoint(load_config(config, list(overrides)))
    obj = TrainObjective(str(Path(cache_root).resolve()), name, str(Path(config).resolve()) if config else None,
                         tuple(overrides), audio_key, caption_key, evaluate_split=evaluate_split)
    config_sha = sha256_file(config)[:16] if config else None
    return obj, (f"train cache={obj.cache_root} name={name} config={obj.base_config} config_sha256={config_sha} "
                 f"set={list(overrides)} audio_key={audio_key} caption_key={caption_key} split={evaluate_split}")

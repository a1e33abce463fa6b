"""One writer per run directory: the cache's writer lock (cache/locks.py), held for the whole of `train`.

Why: two `train` runs with the same --out would both append to metrics.csv and overwrite each other's checkpoints.
The flock on RUN_DIR/.lock is held from before the run directory is read until the run returns, and dropped by the
kernel when the holder dies, so `--resume` just takes it again; forked DataLoader workers do not keep it. Readers
(`eval`, `retrieve`) never take it. Under DDP only rank 0 takes it and broadcasts the outcome.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from audioret.cache.locks import CacheLock, CacheLockedError
from audioret.trainer import distributed as dist_hooks

BUSY_RUN = ("run directory {dir} is in use by pid {pid} (another train or search is writing it); "
            "wait for it to finish or use --wait-lock SECONDS")


@contextmanager
def run_dir_lock(run_dir: str | Path, wait: float | None = 0.0) -> Iterator[None]:
    """Hold RUN_DIR's writer lock (rank 0 only) for the block; raises CacheLockedError on every rank when busy.

    `wait`: seconds to wait for a busy directory (0 refuses at once, None waits forever). Call after
    `distributed.init_distributed()`; a collective in a distributed run (every rank must enter it).
    """
    lock, error = None, None
    if dist_hooks.is_main_process():
        try:
            lock = CacheLock(run_dir, wait=wait, busy=BUSY_RUN, owner_only=True).acquire()
        except CacheLockedError as exc:
            error = str(exc)
    error = dist_hooks.broadcast_object(error)
    if error:
        raise CacheLockedError(error)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def wait_until_free(run_dir: str | Path, wait: float | None = 0.0) -> None:
    """Fail fast in a launcher (`train --nproc N`) before it starts N ranks for a directory another run holds.

    Only a probe (the lock is taken and dropped at once): rank 0 still takes it for the run itself.
    """
    with CacheLock(run_dir, wait=wait, busy=BUSY_RUN):
        pass

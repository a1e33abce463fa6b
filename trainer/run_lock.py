"""One writer per run directory: the cache's writer lock (cache/locks.py), held for the whole of `train`.

Why: two `train` runs with the same --out would both append to metrics.csv and overwrite each other's checkpoints.
The flock on RUN_DIR/.lock is held from before the run directory is read until the run returns, and dropped by the
kernel when the holder dies; forked DataLoader workers do not keep it. A run that wrote nothing (a usage error)
removes the lock file and a directory it made. Under DDP only rank 0 takes it and broadcasts the outcome.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from audioret.cache.locks import LOCK_NAME, CacheLock, CacheLockedError
from audioret.trainer import distributed as dist_hooks

BUSY_RUN = ("run directory {dir} is in use by pid {pid} (another train or search is writing it); "
            "wait for it to finish or use --wait-lock SECONDS")


@contextmanager
def run_dir_lock(run_dir: str | Path, wait: float | None = 0.0) -> Iterator[None]:
    """Hold RUN_DIR's writer lock (rank 0 only) for the block; raises CacheLockedError on every rank when busy.

    `wait`: seconds to wait for a busy directory (0 refuses at once, None waits forever). Call after
    `distributed.init_distributed()`; a collective in a distributed run (every rank must enter it).
    """
    lock, error, before = None, None, _names(Path(run_dir))
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
            _release(lock, Path(run_dir), before)


def _names(run_dir: Path) -> set[str] | None:
    """The entries of `run_dir` (None: it does not exist)."""
    try:
        return {p.name for p in run_dir.iterdir()}
    except OSError:
        return None


def _release(lock: CacheLock, run_dir: Path, before: set[str] | None) -> None:
    """Drop the lock; a run that wrote nothing (a usage error found after the lock was taken) leaves no trace: a lock
    file it created goes, and the directory too when the run created it."""
    created_lock = before is None or LOCK_NAME not in before
    untouched = created_lock and _names(run_dir) == (before or set()) | {LOCK_NAME}
    lock.release(remove=untouched)
    if untouched and before is None:
        try:
            run_dir.rmdir()
        except OSError:  # someone put a file there meanwhile (or another run took the directory): leave it
            pass


def wait_until_free(run_dir: str | Path, wait: float | None = 0.0) -> None:
    """Fail fast in a launcher (`train --nproc N`) before it starts N ranks for a directory another run holds.

    Only a probe (the lock is taken and dropped at once, and a lock file it created removed): rank 0 still takes
    it for the run itself.
    """
    created = not (Path(run_dir) / LOCK_NAME).exists()
    CacheLock(run_dir, wait=wait, busy=BUSY_RUN).acquire().release(remove=created)

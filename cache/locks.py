"""An exclusive writer lock per directory (fcntl.flock), so two `prep` runs never write the same cache (and two
`train` runs never the same run directory: trainer/run_lock.py).

The kernel drops a flock when its holder dies (kill -9 included), so a crashed writer never leaves a stale lock.
The holder's PID is written into the lock file for the error message.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


LOCK_NAME = ".lock"
BUSY_CACHE = ("{dir}: cache is being written by another process (pid {pid}); "
              "wait for it to finish or pass --wait-lock SECONDS")


class CacheLockedError(RuntimeError):
    """Another live process holds the writer lock (a run-time failure: exit 1 in every command)."""


class CacheLock:
    """`with CacheLock(dir, wait=0):` — wait seconds for the lock (0: refuse at once, None: wait forever).

    `busy` is the refusal message, formatted with `dir` and `pid` (the holder), so other directories that take
    the same lock (a training run directory) can say what is busy in their own words.
    """

    def __init__(self, directory: str | Path, wait: float | None = 0.0, poll: float = 0.2, busy: str = BUSY_CACHE):
        self.path = Path(directory) / LOCK_NAME
        self.wait = wait
        self.poll = poll
        self.busy = busy
        self._fd: int | None = None

    def acquire(self) -> "CacheLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        # At least a short grace: `is_locked` probes (cache ls / gc) hold the lock for microseconds.
        deadline = None if self.wait is None else time.monotonic() + max(self.wait, 0.5)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise CacheLockedError(self.busy.format(dir=self.path.parent, pid=holder)) from None
                time.sleep(self.poll)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "CacheLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip() or "unknown"
    except OSError:
        return "unknown"


def is_locked(directory: str | Path) -> bool:
    """True if a live process holds the writer lock of `directory`."""
    path = Path(directory) / LOCK_NAME
    if not path.exists():
        return False
    fd = os.open(str(path), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False

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


_OWNER_ONLY_FDS: set[int] = set()  # lock descriptors a forked child must not keep (CacheLock(owner_only=True))


def _close_owner_only_fds() -> None:
    """In a forked child: drop its copies of owner-only lock descriptors (the parent's lock stays held)."""
    for fd in _OWNER_ONLY_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _OWNER_ONLY_FDS.clear()


os.register_at_fork(after_in_child=_close_owner_only_fds)


class CacheLock:
    """`with CacheLock(dir, wait=0):` — wait seconds for the lock (0: refuse at once, None: wait forever).

    `busy` is the refusal message, formatted with `dir` and `pid` (the holder), so other directories that take
    the same lock (a training run directory) can say what is busy in their own words.

    A flock belongs to the open file, and a fork shares it: by default a forked child (a DataLoader worker; any
    fork without exec — spawned processes such as prep's pool workers never get the descriptor, it is opened
    close-on-exec) keeps the lock alive after its parent dies. `owner_only=True` closes the child's copy at fork,
    so the lock dies with the process that took it: `prep` and the run lock (trainer/run_lock.py) take it so, else
    a re-run or `--resume` right after `kill -9` could be refused until the children notice and exit.

    A lock file removed while a waiter blocks on it guards nothing: `acquire` re-opens the path until the file it
    locked is the one there, so `release(remove=True)` (a directory the holder made and leaves empty) is safe.
    """

    def __init__(self, directory: str | Path, wait: float | None = 0.0, poll: float = 0.2, busy: str = BUSY_CACHE,
                 owner_only: bool = False):
        self.path = Path(directory) / LOCK_NAME
        self.wait = wait
        self.poll = poll
        self.busy = busy
        self.owner_only = owner_only
        self._fd: int | None = None

    def acquire(self) -> "CacheLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        # At least a short grace: `is_locked` probes (cache ls / gc) hold the lock for microseconds.
        deadline = None if self.wait is None else time.monotonic() + max(self.wait, 0.5)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _is_current(fd, self.path):
                    break
                os.close(fd)  # its holder removed the file meanwhile: lock the one at the path now
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
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
        if self.owner_only:
            _OWNER_ONLY_FDS.add(fd)
        return self

    def release(self, remove: bool = False) -> None:
        """Drop the lock; `remove=True` deletes the lock file first (while still holding it)."""
        if self._fd is not None:
            if remove:
                self.path.unlink(missing_ok=True)
            _OWNER_ONLY_FDS.discard(self._fd)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "CacheLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _is_current(fd: int, path: Path) -> bool:
    """True if `fd` is still the file at `path` (not one removed or replaced since it was opened)."""
    try:
        here, mine = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


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

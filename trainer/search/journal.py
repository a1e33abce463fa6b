"""An append-only JSON-lines journal (`trials.jsonl`) that makes searches and sweeps resumable after kill -9.

Why a journal and not a state file: every event (started, finished, failed) is one line appended and fsynced
before the driver acts on it, so a crash can only lose the line being written, and a torn last line is cut off on
reopening. A trial's state is its last event: finished and failed trials are ended; one last `started` was
running when the driver died and is re-queued with the same number and parameters.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from audioret.cache.locks import CacheLock, CacheLockedError

ENDED = ("finished", "failed")


class JournalError(Exception):
    """The journal belongs to a different search (space or settings changed) or is corrupt."""


@dataclass
class TrialState:
    """What the journal knows about one trial (its last event wins)."""

    number: int
    params: dict[str, Any]
    status: str  # started | finished | failed
    run_dir: str = ""
    objective: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_s: float | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.status in ENDED


class Journal:
    """`Journal(path)` reads what is there; `append(event, **fields)` adds one fsynced line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.header: dict[str, Any] | None = None
        self.trials: dict[int, TrialState] = {}
        self._repair_and_read()

    def _repair_and_read(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            cut = raw.rfind(b"\n") + 1  # drop the torn record the crash left behind
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                os.fsync(f.fileno())
            raw = raw[:cut]
        for lineno, line in enumerate(raw.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                self._apply(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise JournalError(f"{self.path}:{lineno}: unreadable journal line ({exc})") from None

    def _apply(self, ev: dict[str, Any]) -> None:
        kind = ev["event"]
        if kind == "header":
            self.header = ev
            return
        n = int(ev["trial"])
        old = self.trials.get(n)
        st = TrialState(number=n, params=ev.get("params", old.params if old else {}), status=kind,
                        run_dir=ev.get("run_dir", old.run_dir if old else ""),
                        extra=ev.get("extra", old.extra if old else {}))
        if kind == "finished":
            st.objective = ev.get("objective")
            st.metrics = ev.get("metrics", {})
            st.wall_s = ev.get("wall_s")
        elif kind == "failed":
            st.error = ev.get("error", "")
            st.wall_s = ev.get("wall_s")
        elif kind != "started":
            raise KeyError(f"unknown event {kind!r}")
        self.trials[n] = st

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event durably (write + flush + fsync) and update the in-memory state."""
        record = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
        line = json.dumps(record, sort_keys=False, allow_nan=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:  # the directory entry of a new file must be durable too
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        self._apply(record)
        return record

    def ensure_header(self, settings: dict[str, Any], must_match: tuple[str, ...]) -> None:
        """Write the header on a new journal; on an old one refuse if any `must_match` setting changed."""
        if self.header is None:
            if self.trials:
                raise JournalError(f"{self.path}: journal has trials but no header line")
            self.append("header", **settings)
            return
        changed = [k for k in must_match if self.header.get(k) != settings.get(k)]
        if changed:
            detail = "; ".join(f"{k}: journal {self.header.get(k)!r} vs now {settings.get(k)!r}" for k in changed)
            raise JournalError(f"{self.path}: this directory holds a different run ({detail}); "
                               f"use another --out or the original settings")

    def by_status(self, *statuses: str) -> list[TrialState]:
        return [t for n, t in sorted(self.trials.items()) if t.status in statuses]

    @property
    def n_ended(self) -> int:
        return sum(1 for t in self.trials.values() if t.ended)

    def next_number(self) -> int:
        return max(self.trials, default=-1) + 1


@contextmanager
def driver_lock(out: Path, what: str, error: type[Exception]) -> Iterator[None]:
    """One driver per output dir (flock, dropped by the kernel on kill -9): two drivers would race on one journal."""
    out.mkdir(parents=True, exist_ok=True)
    lock = CacheLock(out, wait=0)
    try:
        lock.acquire()
    except CacheLockedError:
        raise error(f"{out}: another {what} driver is running in this directory") from None
    try:
        yield
    finally:
        lock.release()

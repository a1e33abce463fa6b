"""Crash-safe publishing: write to a temp file in the same directory, fsync, os.replace, fsync the directory.

A reader therefore sees either no file or a complete one. Temp names carry the writer's PID
(`<name>.tmp-<pid>-<rand>`) so `cache gc` can tell temp files of dead writers from those of live ones. A write that
fails because the disk is full raises `DiskFullError` naming the file, whatever the writer raised (h5py: an
OSError without the path; torch.save: "unexpected pos ..." RuntimeError).
"""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
from pathlib import Path
from typing import Callable

TMP_PATTERN = re.compile(r"^(?P<final>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]+$")
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NEARLY_FULL_BYTES = 1 << 20


class DiskFullError(OSError):
    """ENOSPC (or quota) while writing `filename`; `strerror` may add what the stage needs."""


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def free_bytes(path: str | Path) -> int:
    """Bytes available to this user on the filesystem holding `path` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return st.f_bavail * st.f_frsize


def disk_full_error(path: str | Path, what: str, needed: int, kept: str) -> DiskFullError:
    """`<path>: no space left on device: <what> need about N, M free; free space ... and re-run: <kept> are kept`."""
    return DiskFullError(errno.ENOSPC, f"No space left on device: {what} need about {human_bytes(needed)}, "
                                       f"{human_bytes(free_bytes(path))} free; free space (or use another --cache) "
                                       f"and re-run: {kept} are kept", str(path))


def is_disk_full(exc: BaseException, where: str | Path | None = None) -> bool:
    """An ENOSPC/EDQUOT OSError anywhere in the exception's chain, or (writers such as torch.save that lose the
    errno) any failure while the filesystem at `where` has under 1 MiB left."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in NO_SPACE:
            return True
        seen = seen.__cause__ or seen.__context__
    if where is None or not isinstance(exc, Exception) or (isinstance(exc, OSError) and exc.errno is not None):
        return False  # an OSError with another errno says what went wrong itself
    try:
        return free_bytes(where) < NEARLY_FULL_BYTES
    except OSError:
        return False


def tmp_path_for(final: str | Path) -> Path:
    final = Path(final)
    return final.with_name(f"{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def fsync_path(path: str | Path) -> None:
    """fsync a file's data or a directory's entries (both are opened read-only for it)."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)




def publish_file(final: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then fsync and atomically rename the result to `final`. Cleans up on failure."""
    final = Path(final)
    tmp = tmp_path_for(final)
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, final)
    except BaseException as exc:
        full = not isinstance(exc, DiskFullError) and is_disk_full(exc, tmp.parent)  # before the unlink frees space
        tmp.unlink(missing_ok=True)
        if full:
            raise DiskFullError(errno.ENOSPC, "No space left on device", str(final)) from exc
        raise
    fsync_path(final.parent)
    return final


def publish_json(final: str | Path, obj: object) -> Path:
    """Atomically write `obj` as indented UTF-8 JSON."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False, sort_keys=False)
            f.write("\n")
    return publish_file(final, write)


def pid_alive(pid: int) -> bool:
    """True if `pid` is a running process; a killed one not yet reaped (a zombie) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stale_temp_files(directory: str | Path) -> list[Path]:
    """Temp files in `directory` whose writer process is gone."""
    out = []
    for p in Path(directory).iterdir():
        m = TMP_PATTERN.match(p.name)
        if m and not pid_alive(int(m.group("pid"))):
            out.append(p)
    return out

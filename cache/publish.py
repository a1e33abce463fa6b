"""Crash-safe publishing: write to a temp file in the same directory, fsync, os.replace, fsync the directory.

A reader therefore sees either no file or a complete one. Temp names carry the writer's PID
(`<name>.tmp-<pid>-<rand>`) so `cache gc` can tell temp files of dead writers from those of live ones.
"""
from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Callable

TMP_PATTERN = re.compile(r"^(?P<final>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]+$")


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
    except BaseException:
        tmp.unlink(missing_ok=True)
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

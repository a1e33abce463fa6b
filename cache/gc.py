"""`cache gc`: delete only what this tool provably wrote and nobody needs any more.

Why so strict: CACHE/audio/ and CACHE/captions/ are ordinary folders a user may also put things into. gc deletes
key-named caches that are incomplete and not being written (only the files the tool's naming scheme produces),
folder caches superseded by a newer cache of the same folder, temp files of dead writers, and run records whose
run directory is gone; a cache an existing run uses is never deleted, and everything else is reported as "not
ours" and left alone. The rules: docs/cache-format.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

from audioret.cache.keys import canonical_json, is_key_dir_name
from audioret.cache.locks import LOCK_NAME, CacheLock, CacheLockedError, is_locked
from audioret.cache.manifest import KINDS, MANIFEST_NAME, Manifest, is_cache_file_name, iter_caches
from audioret.cache.publish import TMP_PATTERN, pid_alive, stale_temp_files
from audioret.cache.runs import RUNS_DIR, read_runs, users

TRANSLATIONS_DIR = "translations"  # the translation store's folder (pipeline/translate/store.py): temp files only
SUPERSEDED_DATASETS = ("folder",)  # dataset kinds whose caches are one folder's state (pipeline/folder.py)


@dataclass
class GcPlan:
    """What `cache gc` would delete, and what it met that the tool did not write."""

    remove: list[Path] = field(default_factory=list)  # incomplete cache folders and dead writers' temp files
    foreign: list[Path] = field(default_factory=list)  # not ours: left alone
    in_use: list[tuple[Path, Path]] = field(default_factory=list)  # (cache folder, a run directory that uses it)
    superseded: dict[Path, Path] = field(default_factory=dict)  # complete folder cache to remove → its newer one


def _removable_files(directory: Path) -> tuple[list[Path], list[Path]]:
    """(tool-written files that may go, everything else) in an incomplete cache folder nobody is writing.

    A temp file of a live process stays (and so keeps the folder): only a dead writer's temp file is garbage.
    """
    ours, other = [], []
    for p in sorted(directory.iterdir()):
        if not (p.is_file() and not p.is_symlink() and is_cache_file_name(p.name)):
            other.append(p)
            continue
        tmp = TMP_PATTERN.match(p.name)
        if tmp is None or not pid_alive(int(tmp.group("pid"))):
            ours.append(p)
    return ours, other


def _is_complete(directory: Path) -> bool:
    try:
        return Manifest.read(directory).complete
    except (OSError, ValueError, TypeError, KeyError):
        return False


def _manifest_time(directory: Path, m: Manifest) -> tuple[str, int]:
    """(created, manifest mtime_ns): when a cache was made, ties broken by when its manifest was last written."""
    try:
        return m.created, (directory / MANIFEST_NAME).stat().st_mtime_ns
    except OSError:
        return m.created, 0


def superseded_caches(cache_root: str | Path) -> dict[Path, Path]:
    """Complete folder caches (module docstring) → the newest complete cache of the same folder, name and
    feature definition, for every one that is not that newest one."""
    groups: dict[tuple, list[tuple[Path, Manifest]]] = {}
    for d, m in iter_caches(cache_root, "audio"):
        if m is not None and m.complete and m.dataset in SUPERSEDED_DATASETS and m.extra.get("root"):
            groups.setdefault((m.name, m.extra["root"], canonical_json(m.config)), []).append((d, m))
    out: dict[Path, Path] = {}
    for members in groups.values():
        members.sort(key=lambda dm: _manifest_time(*dm))
        out.update({d: members[-1][0] for d, _ in members[:-1]})
    return out


def garbage(cache_root: str | Path) -> GcPlan:
    """Look at every entry under CACHE/audio/ and CACHE/captions/, temp files under CACHE/translations/ and the
    run records under CACHE/runs/."""
    plan = GcPlan()
    root = Path(cache_root)
    records = read_runs(root)
    superseded = superseded_caches(root)
    for kind in KINDS:
        base = root / kind
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            if entry.is_symlink() or not entry.is_dir():
                if entry.is_file() and TMP_PATTERN.match(entry.name):
                    plan.remove += [entry] if entry in stale_temp_files(base) else []
                else:
                    plan.foreign.append(entry)
            elif not is_key_dir_name(entry.name):
                plan.foreign.append(entry)
            elif is_locked(entry):
                continue
            elif entry in superseded and users(records, kind, entry.name):
                plan.in_use.append((entry, users(records, kind, entry.name)[0].run_dir))
            elif entry in superseded:
                plan.remove.append(entry)
                plan.superseded[entry] = superseded[entry]
                plan.foreign += _removable_files(entry)[1]
            elif _is_complete(entry):
                plan.remove += [p for p in stale_temp_files(entry) if is_cache_file_name(p.name)]
            elif users(records, kind, entry.name):  # e.g. its manifest got damaged: still not garbage
                plan.in_use.append((entry, users(records, kind, entry.name)[0].run_dir))
            else:
                plan.remove.append(entry)
                plan.foreign += _removable_files(entry)[1]
    for folder in (root / TRANSLATIONS_DIR, root / RUNS_DIR):
        if folder.is_dir():
            plan.remove += stale_temp_files(folder)
    plan.remove += [r.path for r in records if not r.exists]
    return plan


def remove(paths: list[Path], superseded: Collection[Path] = ()) -> list[tuple[Path, str]]:
    """Delete what `garbage` planned; returns (cache folder, why) for each folder left in place.

    A cache folder is emptied only while holding its writer lock, and only if it is still incomplete (a prep
    that started or finished since `garbage` looked is left alone) or one of the `superseded` folder caches
    (`GcPlan.superseded`); then its tool-written files are deleted —
    the lock file last, so a prep starting meanwhile can never have a file of its own deleted — and the folder
    too once nothing else is left in it.
    """
    kept = []
    for p in paths:
        if not p.is_dir():
            p.unlink(missing_ok=True)
            continue
        try:
            with CacheLock(p, wait=0):
                if _is_complete(p) and p not in superseded:
                    kept.append((p, "a writer finished it meanwhile"))
                    continue
                ours, other = _removable_files(p)
                for f in sorted(ours, key=lambda f: f.name == LOCK_NAME):
                    f.unlink(missing_ok=True)  # the lock stays held through the open descriptor
        except CacheLockedError:
            kept.append((p, "a writer is using it now"))
            continue
        try:
            p.rmdir()
        except OSError:  # files the tool did not write (or a prep that started since) keep the folder
            kept.append((p, "it holds files this tool did not write" if other else "a writer is using it now"))
    return kept


__all__ = ["GcPlan", "garbage", "remove", "superseded_caches"]

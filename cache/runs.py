"""Which runs use which caches: one small JSON record per run under CACHE/runs/.

Why under the cache root: a cache is shared by runs that live anywhere on disk, and only the cache side can
answer "what was built on this cache" (`cache ls`) or "may this go" (`cache gc`) without knowing where runs are
kept. A record names the run's directory and every cache it reads; its file name is a hash of the run directory's
path, so a resumed run rewrites its own record. A record whose directory is gone is stale.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from audioret.cache.keys import key_dir_name
from audioret.cache.manifest import now_iso
from audioret.cache.publish import publish_json

RUNS_DIR = "runs"
_RECORD_NAME = re.compile(r"^[0-9a-f]{16}\.json$")


@dataclass(frozen=True)
class CacheUse:
    """One cache a run reads."""

    kind: str  # audio | captions
    name: str
    key: str  # full key
    role: str  # e.g. main | extra

    @property
    def dir_name(self) -> str:
        return key_dir_name(self.key)


@dataclass
class RunRecord:
    path: Path  # the record file under CACHE/runs/
    run_dir: Path
    caches: list[CacheUse]
    updated: str

    @property
    def exists(self) -> bool:
        return self.run_dir.is_dir()

    def uses(self, kind: str, dir_name: str) -> bool:
        return any(c.kind == kind and c.dir_name == dir_name for c in self.caches)


def record_path(cache_root: str | Path, run_dir: str | Path) -> Path:
    digest = hashlib.sha256(str(Path(run_dir).resolve()).encode("utf-8")).hexdigest()
    return Path(cache_root) / RUNS_DIR / f"{digest[:16]}.json"


def register_run(cache_root: str | Path, run_dir: str | Path, caches: list[CacheUse]) -> Path:
    """Write (or rewrite) the record of `run_dir` under `cache_root`; OSError when the root is not writable."""
    path = record_path(cache_root, run_dir)
    path.parent.mkdir(exist_ok=True)
    return publish_json(path, {"run_dir": str(Path(run_dir).resolve()), "updated": now_iso(),
                               "caches": [asdict(c) for c in caches]})


def read_runs(cache_root: str | Path) -> list[RunRecord]:
    """Every readable record under CACHE/runs/, by run directory (unreadable or foreign files are skipped)."""
    base = Path(cache_root) / RUNS_DIR
    out = []
    for p in sorted(base.iterdir()) if base.is_dir() else []:
        if not (p.is_file() and _RECORD_NAME.match(p.name)):
            continue
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            caches = [CacheUse(str(c["kind"]), str(c["name"]), str(c["key"]), str(c["role"])) for c in d["caches"]]
            out.append(RunRecord(p, Path(d["run_dir"]), caches, str(d.get("updated", ""))))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return sorted(out, key=lambda r: str(r.run_dir))


def users(records: list[RunRecord], kind: str, dir_name: str) -> list[RunRecord]:
    """The records of existing run directories that use the cache CACHE/<kind>/<dir_name>."""
    return [r for r in records if r.exists and r.uses(kind, dir_name)]


__all__ = ["RUNS_DIR", "CacheUse", "RunRecord", "read_runs", "record_path", "register_run", "users"]

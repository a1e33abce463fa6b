"""Cache keys: a sha256 fingerprint of everything that made a cache (HF-datasets style).

A different key is a different directory, so nothing stale is ever read: change the extractor config, the code
version, a library version or any source file (size / mtime_ns, or content on request) and the key changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

KEY_DIR_CHARS = 16  # directory names use the first 16 hex chars (64 bits); manifests keep the full key
_KEY_DIR = re.compile(rf"^[0-9a-f]{{{KEY_DIR_CHARS}}}$")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) for hashing and attributes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def source_relpath(path: str | Path, root: str | Path) -> str:
    """A source's path relative to the dataset root, or its absolute path when it lies outside the root."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(Path(path).resolve())


def source_fingerprint(path: str | Path, root: str | Path, content_hash: bool = False) -> dict:
    """(relative path, size, mtime_ns[, sha256]) of one source file; a missing file fingerprints as missing."""
    path = Path(path)
    rel = source_relpath(path, root)
    try:
        st = os.stat(path)
    except OSError:
        return {"path": rel, "missing": True}
    fp = {"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if content_hash:
        fp["sha256"] = sha256_file(path)
    return fp


def cache_key(kind: str, config: dict, code_version: str, versions: dict, sources: Iterable[dict]) -> str:
    """Full sha256 hex key over kind, config, code version, library versions and sorted source fingerprints."""
    payload = {
        "kind": kind,
        "config": config,
        "code_version": code_version,
        "versions": versions,
        "sources": sorted(sources, key=canonical_json),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def key_dir_name(key: str) -> str:
    return key[:KEY_DIR_CHARS]


def is_key_dir_name(name: str) -> bool:
    """True for a name `key_dir_name` can produce: only such folders under CACHE/<kind>/ are caches."""
    return bool(_KEY_DIR.match(name))

"""Generic HDF5 shard files: atomic publish and the payload digests shared by every shard kind.

A shard is one HDF5 file of contiguous, uncompressed datasets, so a reader can memmap the feature matrix at its
file offset. Two digests of the same byte stream (every dataset's name, shape, dtype and bytes, in sorted name
order) are recorded at publish time: `payload_sha256`, the shard's identity that `cache verify` checks, and the
fast `payload_xxh3_128` that readers check on first use (cache/integrity.py).
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import h5py
import numpy as np
import xxhash

from audioret.cache.manifest import CacheIntegrityError  # noqa: F401  (re-exported: shard readers raise it)
from audioret.cache.publish import publish_file

CHECKSUM_ATTR = "payload_sha256"
FAST_CHECKSUM_ATTR = "payload_xxh3_128"
DIGESTS = {"sha256": hashlib.sha256, "xxh3_128": xxhash.xxh3_128}
STR_DTYPE = h5py.string_dtype("utf-8")


def _dataset_names(h5: h5py.File) -> list[str]:
    # visit + getclass: the same names as visititems, without building an h5py object per member (~40 % faster)
    names: list[str] = []
    h5.visit(names.append)
    return sorted(n for n in names if h5.get(n, getclass=True) is h5py.Dataset)


def _raw_bytes(ds: h5py.Dataset, h5: h5py.File) -> memoryview | None:
    """The bytes of a contiguous, unfiltered numeric dataset straight from the file `h5` (a read-only memmap at
    its offset: no copy, so hashing runs at the digest's speed), or None where h5py must decode the data."""
    offset = ds.id.get_offset()
    if (h5.driver != "sec2" or offset is None or ds.chunks is not None or ds.compression is not None
            or ds.dtype.kind not in "biuf"):
        return None
    n = ds.size * ds.dtype.itemsize
    return memoryview(np.memmap(h5.filename, dtype=np.uint8, mode="r", offset=offset, shape=(n,))) if n else None


def string_bytes(items: Iterable[str | bytes]) -> bytes:
    """The digest stream of a string dataset: per item its UTF-8 length (8 bytes, little-endian) and bytes.

    Built as one buffer and hashed in one call: the same stream as one update per item, without a Python call
    per caption into every digest (that loop was most of opening a 450k-clip cache; benchmarks/scale_stream.py).
    `bytes` items are taken as the UTF-8 h5py read from the file (no decode and re-encode)."""
    parts = []
    for item in items:
        data = item if isinstance(item, bytes) else item.encode("utf-8")
        parts.append(len(data).to_bytes(8, "little"))
        parts.append(data)
    return b"".join(parts)


def _update_with_dataset(hashers: list, name: str, ds: h5py.Dataset, h5: h5py.File,
                         strings: np.ndarray | None = None) -> None:
    def update(data: bytes | memoryview) -> None:
        for h in hashers:
            h.update(data)

    update(name.encode("utf-8") + b"\0")
    update(repr(tuple(ds.shape)).encode() + b"\0")
    if h5py.check_string_dtype(ds.dtype) is not None:
        update(b"str\0")
        data = ds[()] if strings is None else strings  # UTF-8 bytes as stored
        update(string_bytes(data.reshape(-1).tolist() if ds.shape else [data]))
        return
    update(np.dtype(ds.dtype).str.encode() + b"\0")
    rows = ds.shape[0] if ds.shape else 0
    if rows == 0 or ds.size == 0:
        if not ds.shape:
            update(np.ascontiguousarray(ds[()]).tobytes())
        return
    raw = _raw_bytes(ds, h5)  # the same bytes h5py would return (the file's own dtype), without the copy
    if raw is not None:
        update(raw)
        return
    # Otherwise read in row blocks so a large matrix is hashed without a full copy in memory.
    step = max(1, (1 << 24) // max(1, ds.dtype.itemsize * (ds.size // rows)))
    for start in range(0, rows, step):
        update(np.ascontiguousarray(ds[start:start + step]).tobytes())


def payload_digests(h5: h5py.File, algorithms: Iterable[str] = ("sha256",),
                    strings: Mapping[str, np.ndarray] | None = None) -> dict[str, str]:
    """Hex digests (`DIGESTS` names) of every dataset in sorted name order (name, shape, dtype, raw bytes /
    UTF-8 strings), all computed in one pass over the data. `strings`: string datasets the caller has already
    read raw (`ds[()]`, UTF-8 bytes), hashed from there instead of read again (cache/caption_shards.py)."""
    names = list(algorithms)
    hashers = [DIGESTS[a]() for a in names]
    for name in _dataset_names(h5):
        _update_with_dataset(hashers, name, h5[name], h5, (strings or {}).get(name))
    return {a: h.hexdigest() for a, h in zip(names, hashers, strict=False)}


def payload_checksum(h5: h5py.File) -> str:
    """sha256 over every dataset in sorted name order (name, shape, dtype, raw bytes / UTF-8 strings)."""
    return payload_digests(h5)["sha256"]


def file_checksum(path: str | Path) -> str:
    with h5py.File(path, "r") as f:
        return payload_checksum(f)


def _as_h5_array(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in ("U", "O"):
        return np.array([str(v) for v in arr.reshape(-1)], dtype=object).reshape(arr.shape).astype(STR_DTYPE)
    return arr


def write_h5_shard(final_path: str | Path, datasets: Mapping[str, Any], attrs: Mapping[str, Any]) -> str:
    """Publish one shard atomically; returns the payload sha256 (stored as attribute `payload_sha256`, beside
    the fast `payload_xxh3_128`).

    Dict/list attribute values are stored as JSON strings. Datasets are contiguous and uncompressed.
    """
    result: dict[str, str] = {}

    def write(tmp: Path) -> None:
        # Built in memory, then written with plain file I/O. Why: when the disk fills up while HDF5 itself writes,
        # its file id stays half-closed, fails again at every later flush and can crash the interpreter at exit;
        # a plain write fails once, with a clean OSError (ENOSPC) that publish_file reports. Costs one copy of the
        # shard in memory.
        buffer = io.BytesIO()
        with h5py.File(buffer, "w", libver="latest") as f:
            for name, value in datasets.items():
                arr = _as_h5_array(value)
                if arr.dtype == object:
                    f.create_dataset(name, data=arr, dtype=STR_DTYPE)
                else:
                    f.create_dataset(name, data=arr)
            for k, v in attrs.items():
                f.attrs[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
            f.flush()
            digests = payload_digests(f, ("sha256", "xxh3_128"))
            result["sha"] = digests["sha256"]
            f.attrs[CHECKSUM_ATTR] = digests["sha256"]
            f.attrs[FAST_CHECKSUM_ATTR] = digests["xxh3_128"]
        with open(tmp, "wb") as out:
            out.write(buffer.getbuffer())

    publish_file(final_path, write)
    return result["sha"]


def read_attrs(path: str | Path) -> dict:
    """File attributes with JSON strings decoded where they parse as JSON objects/lists."""
    out: dict = {}
    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            if isinstance(v, str) and v[:1] in "[{":
                try:
                    v = json.loads(v)
                except ValueError:
                    pass
            out[k] = v
    return out

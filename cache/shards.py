"""Generic HDF5 shard files: atomic publish and a payload checksum shared by every shard kind.

A shard is one HDF5 file of contiguous, uncompressed datasets (contiguous so a reader can memmap the feature
matrix at its file offset). `payload_sha256` covers every dataset (name, dtype, shape, bytes) and is recorded both
as a file attribute and in the manifest at publish time, so `cache verify` can detect bit rot or a foreign file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from cache.manifest import CacheIntegrityError  # noqa: F401  (re-exported: shard readers raise it)
from cache.publish import publish_file

CHECKSUM_ATTR = "payload_sha256"
STR_DTYPE = h5py.string_dtype("utf-8")


def _dataset_names(h5: h5py.File) -> list[str]:
    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


def _update_with_dataset(h: "hashlib._Hash", name: str, ds: h5py.Dataset) -> None:
    h.update(name.encode("utf-8") + b"\0")
    h.update(repr(tuple(ds.shape)).encode() + b"\0")
    if h5py.check_string_dtype(ds.dtype) is not None:
        h.update(b"str\0")
        for item in ds.asstr()[()].reshape(-1).tolist() if ds.shape else [ds.asstr()[()]]:
            data = item.encode("utf-8")
            h.update(len(data).to_bytes(8, "little") + data)
        return
    h.update(np.dtype(ds.dtype).str.encode() + b"\0")
    # Read in row blocks so a large feature matrix is hashed without a full copy in memory.
    rows = ds.shape[0] if ds.shape else 0
    if rows == 0 or ds.size == 0:
        if not ds.shape:
            h.update(np.ascontiguousarray(ds[()]).tobytes())
        return
    step = max(1, (1 << 24) // max(1, ds.dtype.itemsize * (ds.size // rows)))
    for start in range(0, rows, step):
        h.update(np.ascontiguousarray(ds[start:start + step]).tobytes())


def payload_checksum(h5: h5py.File) -> str:
    """sha256 over every dataset in sorted name order (name, shape, dtype, raw bytes / UTF-8 strings)."""
    h = hashlib.sha256()
    for name in _dataset_names(h5):
        _update_with_dataset(h, name, h5[name])
    return h.hexdigest()


def file_checksum(path: str | Path) -> str:
    with h5py.File(path, "r") as f:
        return payload_checksum(f)


def _as_h5_array(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in ("U", "O"):
        return np.array([str(v) for v in arr.reshape(-1)], dtype=object).reshape(arr.shape).astype(STR_DTYPE)
    return arr


def write_h5_shard(final_path: str | Path, datasets: Mapping[str, Any], attrs: Mapping[str, Any]) -> str:
    """Publish one shard atomically; returns the payload checksum (also stored as attribute `payload_sha256`).

    Dict/list attribute values are stored as JSON strings. Datasets are contiguous and uncompressed.
    """
    result: dict[str, str] = {}

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w", libver="latest") as f:
            for name, value in datasets.items():
                arr = _as_h5_array(value)
                if arr.dtype == object:
                    f.create_dataset(name, data=arr, dtype=STR_DTYPE)
                else:
                    f.create_dataset(name, data=arr)
            for k, v in attrs.items():
                f.attrs[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
            f.flush()
            result["sha"] = payload_checksum(f)
            f.attrs[CHECKSUM_ATTR] = result["sha"]

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

"""`audioret download`: public datasets from Zenodo in one command, verified, resumable, idempotent.

Every dataset is a table of `RemoteFile`s (name, size, md5, the folder an archive extracts into) and goes through
the same `download_files`. Why: a truncated archive must be caught before hours of feature extraction, a verified
file or extracted split is never fetched again, and extraction is renamed into place so a kill never leaves a
half-filled split folder that `prep` would read as the whole split. Layouts: docs/data.md.
"""
from __future__ import annotations

import json
import lzma
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import py7zr

from audioret.cache.locks import CacheLock, CacheLockedError
from audioret.cache.publish import fsync_path, publish_json
from audioret.pipeline.datasets import CLOTHO_SPLITS
from audioret.pipeline.fetch import (
    ChecksumError,
    DiskSpaceError,
    DownloadError,
    FetchOptions,
    NetworkError,
    RemoteFile,
    fetch,
    make_session,
    require_free,
)

CLOTHO_RECORD = "4783391"
CLOTHO_URL = f"https://zenodo.org/records/{CLOTHO_RECORD}/files/{{name}}?download=1"
MARKER = ".audioret-extracted.json"
REPORT_NAME = "download-report.json"

# Clotho v2.1, Zenodo record 4783391. md5 values: the record's file metadata, as also pinned by aac-datasets
# (Labbeti/aac-datasets, src/aac_datasets/datasets/functional/clotho.py, _CLOTHO_LINKS["v2.1"]) and mirdata's
# clotho loader. Sizes (bytes): the record's file metadata as quoted by an independent audit table; the evaluation
# files' sizes and the LICENSE's md5 and size were not found in any source available offline, so they are None:
# the evaluation files are then checked by md5 only and the LICENSE not at all (with a warning). The evaluation
# archive is byte-identical to Clotho v1/v2 (same md5 in records 3490684 and 4743815).
CLOTHO_FILES: tuple[RemoteFile, ...] = (
    RemoteFile("LICENSE", None, None),
    RemoteFile("clotho_captions_development.csv", 1_336_762, "d4090b39ce9f2491908eebf4d5b09bae", "development"),
    RemoteFile("clotho_metadata_development.csv", 830_797, "170d20935ecfdf161ce1bb154118cda5", "development"),
    RemoteFile("clotho_captions_validation.csv", 367_649, "5879e023032b22a2c930aaa0528bead4", "validation"),
    RemoteFile("clotho_metadata_validation.csv", 224_803, "2e010427c56b1ce6008b0f03f41048ce", "validation"),
    RemoteFile("clotho_captions_evaluation.csv", None, "1b16b9e57cf7bdb7f13a13802aeb57e2", "evaluation"),
    RemoteFile("clotho_metadata_evaluation.csv", None, "13946f054d4e1bf48079813aac61bf77", "evaluation"),
    RemoteFile("clotho_audio_development.7z", 4_541_582_263, "c8b05bc7acdb13895bb3c6a29608667e", "development"),
    RemoteFile("clotho_audio_validation.7z", 1_260_701_425, "7dba730be08bada48bd15dc4e668df59", "validation"),
    RemoteFile("clotho_audio_evaluation.7z", None, "4569624ccadf96223f19cb59fe4f849f", "evaluation"),
)


# DCASE 2022 task 6b (language-based audio retrieval) evaluation set, Zenodo record 6590983. md5 values: as pinned
# by soundata's dcase23_task6b loader (soundata/soundata, soundata/datasets/dcase23_task6b.py, REMOTES), which
# reads the same record; not checked against the record itself from here. Sizes were found in no source available
# offline (None: md5 only). A mismatch keeps the file aside as NAME.bad-md5; --checksums overrides the table.
DCASE2022_RETRIEVAL_RECORD = "6590983"
DCASE2022_RETRIEVAL_URL = f"https://zenodo.org/records/{DCASE2022_RETRIEVAL_RECORD}/files/{{name}}?download=1"
DCASE2022_RETRIEVAL_FILES: tuple[RemoteFile, ...] = (
    RemoteFile("retrieval_captions.csv", None, "f9e810118be00c64ea8cd7557816d4fe"),
    RemoteFile("retrieval_audio_metadata.csv", None, "1301db07acbf1e4fabc467eb54e0d353"),
    RemoteFile("retrieval_audio.7z", None, "24102395fd757c462421a483fba5c407", "retrieval_audio"),
)


class UsageError(ValueError):
    """Bad arguments (unknown split, unreadable checksum file): exit code 2."""


@dataclass
class DownloadResult:
    """What happened, per file and per split; `failures` non-empty means exit 1 (nothing done) or 3 (partial)."""

    files: dict[str, str] = field(default_factory=dict)  # name -> present|downloaded|failed|skipped
    splits: dict[str, str] = field(default_factory=dict)  # split -> extracted|present|foreign|failed
    failures: list[dict] = field(default_factory=list)  # {"file": ..., "error": ...}
    fatal: str | None = None  # a reason that stopped the whole run (unreachable network, lock held)

    def exit_code(self) -> int:
        if not self.failures and self.fatal is None:
            return 0
        done = any(s in ("present", "downloaded") for s in self.files.values())
        return 3 if done and self.fatal is None else 1


def parse_splits(text: str) -> list[str]:
    splits = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in splits if s not in CLOTHO_SPLITS]
    if bad or not splits:
        raise UsageError(f"unknown split(s) {', '.join(bad) or '(none)'}; choose from {', '.join(CLOTHO_SPLITS)}")
    return splits


def load_checksums(path: Path, table: tuple[RemoteFile, ...] = CLOTHO_FILES) -> tuple[RemoteFile, ...]:
    """Overlay a JSON file `{"NAME": {"md5": "...", "size": N}, ...}` on the table (for mirrors and tests).

    Only the keys given change; `null` removes a check. Unknown names are a usage error, so a typo cannot
    silently leave a file unchecked.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read checksum file: {exc}") from None
    known = {f.name: f for f in table}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(f'{path}: expected {{"FILE": {{"md5": ..., "size": ...}}}}')
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UsageError(f"{path}: unknown file name(s) {', '.join(unknown)}")
    for name, entry in data.items():
        extra = set(entry) - {"md5", "size"}
        if extra:
            raise UsageError(f"{path}: {name}: unknown key(s) {', '.join(sorted(extra))}")
        known[name] = replace(known[name], **entry)
    return tuple(known[f.name] for f in table)


def url_for(base_url: str, name: str) -> str:
    """`base_url` may hold `{name}`; otherwise the file name is appended as a path component."""
    return base_url.format(name=name) if "{name}" in base_url else f"{base_url.rstrip('/')}/{name}"


def split_done(root: Path, split: str) -> str | None:
    """"present" if we extracted this split before, "foreign" if the folder exists but was not made by us."""
    folder = root / split
    if (folder / MARKER).is_file():
        return "present"
    if folder.is_dir() and any(folder.iterdir()):
        return "foreign"
    return None


def download_clotho(root: Path, splits: list[str] | None = None, keep_archives: bool = False,
                    base_url: str = CLOTHO_URL, table: tuple[RemoteFile, ...] = CLOTHO_FILES,
                    opts: FetchOptions | None = None) -> DownloadResult:
    """Fetch, verify and extract the Clotho files of `splits` into `root` (see module docstring)."""
    return download_files(root, table, base_url, list(splits or CLOTHO_SPLITS), keep_archives, opts)


def download_files(root: Path, table: tuple[RemoteFile, ...], base_url: str, splits: list[str] | None = None,
                   keep_archives: bool = False, opts: FetchOptions | None = None) -> DownloadResult:
    """Fetch, verify and extract the files of `table` whose split is None or in `splits` (None: all) into `root`;
    each archive extracts into ROOT/<its split>/."""
    opts = opts or FetchOptions()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    result = DownloadResult()
    try:
        lock = CacheLock(root, wait=0).acquire()
    except CacheLockedError:
        result.fatal = f"{root}: another `audioret download` is writing here; wait for it to finish"
        return result
    try:
        _run(root, splits, keep_archives, base_url, table, opts, result)
        _write_report(root, result)
    finally:
        lock.release()
    return result


def _run(root: Path, splits: list[str] | None, keep_archives: bool, base_url: str, table: tuple[RemoteFile, ...],
         opts: FetchOptions, result: DownloadResult) -> None:
    wanted = [f for f in table if f.split is None or splits is None or f.split in splits]
    # Small files first: a bad URL or checksum table shows up in seconds, not after a 4.5 GB archive.
    wanted.sort(key=lambda f: f.name.endswith(".7z"))
    session = make_session()
    for remote in wanted:
        is_archive = remote.name.endswith(".7z")
        dest = root / remote.name
        state = split_done(root, remote.split) if is_archive else None
        if state:  # extracted before (or by the user): the archive is not needed, kept or not
            result.files[remote.name] = "skipped"
            result.splits[remote.split] = state
            if state == "foreign":
                _note(f"{root / remote.split}: exists and was not extracted by audioret; left as it is "
                      f"(move it away to download and extract {remote.name})")
            continue
        try:
            result.files[remote.name] = fetch(session, url_for(base_url, remote.name), dest, remote, opts)
            _note(f"{remote.name}: {result.files[remote.name]}")
            if is_archive:
                result.splits[remote.split] = extract_split(dest, root, remote, opts)
                if not keep_archives:
                    dest.unlink()
        except NetworkError as exc:
            result.files[remote.name] = "failed"
            result.failures.append({"file": remote.name, "error": str(exc)})
            result.fatal = str(exc)
            return
        except (DownloadError, OSError) as exc:
            result.files[remote.name] = "failed"
            if is_archive:
                result.splits[remote.split] = "failed"
            entry = {"file": remote.name, "error": " ".join(str(exc).split())}
            if isinstance(exc, ChecksumError):
                entry["kept_as"] = str(exc.bad_path)
            result.failures.append(entry)
            print(f"error: {entry['error']}", file=sys.stderr)


def extract_split(archive: Path, root: Path, remote: RemoteFile, opts: FetchOptions) -> str:
    """Extract `archive` into ROOT/<split>/ atomically; returns "extracted" or "present".

    Clotho archives hold one top-level folder (named after the split) whose content becomes ROOT/<split>/;
    an archive of bare files (a mirror repacked without it) works too.
    """
    split = remote.split
    state = split_done(root, split)
    if state:
        return state
    final = root / split
    temp = root / f".extract-{split}.tmp"
    if temp.exists():
        shutil.rmtree(temp)  # left by a killed run; ours by name, and the root is locked
    try:
        with py7zr.SevenZipFile(archive, "r") as z:
            members = z.list()
            for info in members:
                if info.filename.startswith("/") or ".." in Path(info.filename).parts:
                    raise DownloadError(f"{archive.name}: unsafe member path {info.filename!r}; not extracted")
            require_free(root, sum(int(i.uncompressed or 0) for i in members), opts.min_free,
                         f"extracting {archive.name}")
            temp.mkdir()
            _note(f"{archive.name}: extracting {len(members)} entries into {final}")
            z.extractall(path=temp)
    except (py7zr.exceptions.ArchiveError, lzma.LZMAError, EOFError, ValueError) as exc:
        if temp.exists():
            shutil.rmtree(temp)  # half an extraction: nothing to look at, and the next run starts over
        raise DownloadError(f"{archive}: cannot extract ({' '.join(str(exc).split())}); "
                            + _after_failed_extraction(archive, remote)) from None
    entries = [p for p in temp.iterdir()]
    inner = entries[0] if len(entries) == 1 and entries[0].is_dir() else temp
    n_files = sum(1 for p in inner.rglob("*") if p.is_file())
    publish_json(inner / MARKER, {"archive": archive.name, "md5": remote.md5, "files": n_files,
                                  "extracted": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if final.exists():
        final.rmdir()  # an empty folder (split_done treats it as absent); a non-empty one was returned above
    os.rename(inner, final)
    fsync_path(root)  # the rename is the commit point: make it durable before the archive may be deleted
    if inner != temp:
        shutil.rmtree(temp)
    return "extracted"


def _after_failed_extraction(archive: Path, remote: RemoteFile) -> str:
    """What happens to an archive that would not extract, said in the error. Without a published md5 nothing told
    a damaged download from a good one, so the file is moved aside and a re-run fetches it again (kept in place,
    `fetch` would take it as present and fail here again forever); with a matching md5 the download is good and
    stays (the archive itself, or the disk, is the problem)."""
    if remote.md5 is not None:
        return "its md5 matches the published one, so it is kept"
    aside = archive.with_name(archive.name + ".bad-archive")
    n = 1
    while aside.exists():
        aside = archive.with_name(f"{archive.name}.bad-archive.{n}")
        n += 1
    os.replace(archive, aside)
    return f"no published md5 tells a damaged download apart: moved aside as {aside}, a re-run fetches it again"


def _write_report(root: Path, result: DownloadResult) -> None:
    """Failures go to ROOT/download-report.json (the exit-3 report); a clean run removes a stale one."""
    report = root / REPORT_NAME
    if result.failures or result.fatal:
        publish_json(report, {"files": result.files, "splits": result.splits, "failures": result.failures,
                              "fatal": result.fatal})
    elif report.exists():
        report.unlink()


def _note(message: str) -> None:
    print(message, file=sys.stderr)


__all__ = ["CLOTHO_FILES", "CLOTHO_SPLITS", "CLOTHO_URL", "DCASE2022_RETRIEVAL_FILES", "DCASE2022_RETRIEVAL_URL",
           "ChecksumError", "DiskSpaceError", "DownloadResult", "FetchOptions", "UsageError", "download_clotho",
           "download_files", "extract_split", "load_checksums", "parse_splits", "url_for"]

"""Environment failures are one line naming the path, never a traceback: a full disk (with the space the stage
needs; the re-run after freeing space finishes the same cache bit for bit), permission denied, `--cache` under a
regular file, and a checkpoint that does not fit while training.

A full disk is a real, tiny tmpfs: mounting one needs root (CI runs as root); elsewhere, or where the container
forbids mounts, those tests are skipped with the reason. Permission denied as root (who ignores mode bits) runs
the CLI under util-linux `setpriv` without CAP_DAC_OVERRIDE; skipped where that is not possible.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from audioret.cache.manifest import Manifest
from support import REPO, cli_cmd, cli_env, run_cli
from support.demo import fast_overrides
from support.prep import make_clips, write_manifest


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    return line


@pytest.fixture(scope="module")
def dataset() -> Path:
    """Eight real-sound clips and a manifest in a world-readable folder (the `nobody` test reads it too)."""
    folder = Path(tempfile.mkdtemp(prefix="audioret-prep-errors-"))
    os.chmod(folder, 0o755)
    clips = make_clips(folder / "clips", 8, seconds=2.0)
    manifest = write_manifest(folder / "clips.csv", clips)
    for p in [folder / "clips", *clips, manifest]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    yield manifest
    shutil.rmtree(folder, ignore_errors=True)


def prep(kind: str, manifest: Path, cache: Path, **kw) -> subprocess.CompletedProcess:
    extra = ["--workers", "1", "--no-progress", "--shard-size", "3"] if kind == "audio" else ["--shard-size", "3"]
    return run_cli("prep", kind, "--dataset", "manifest", "--manifest", manifest, "--cache", cache, *extra, **kw)


class TinyFs:
    """A tmpfs of a given size mounted on a fresh directory (root only); `resize` grows it in place."""

    def __init__(self, size: str) -> None:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs to fill the disk needs root")
        self.path = Path(tempfile.mkdtemp(prefix="audioret-full-"))
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            self.path.rmdir()
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")

    def resize(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def close(self) -> None:
        subprocess.run(["umount", str(self.path)], check=False)
        self.path.rmdir()


@pytest.fixture
def tiny_fs():
    made: list[TinyFs] = []

    def make(size: str) -> TinyFs:
        made.append(TinyFs(size))
        return made[-1]

    yield make
    for fs in made:
        fs.close()


def shard_sums(cache: Path, kind: str) -> list[str]:
    (d,) = list((cache / kind).iterdir())
    return [s.sha256 for s in Manifest.read(d).shards]


def test_cache_under_a_regular_file_is_one_line(dataset, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    for kind in ("audio", "captions"):
        line = one_error_line(prep(kind, dataset, blocker / "cache"))
        assert f"{blocker}/cache/{kind}/" in line and f"not a directory ({blocker} is a regular file)" in line


def test_disk_full_says_what_prep_needs_and_the_rerun_completes_identically(dataset, tmp_path, tiny_fs):
    fs = tiny_fs("80k")  # room for the manifest and about one 3-clip shard of the three
    line = one_error_line(prep("audio", dataset, fs.path / "c"))
    assert "no space left on device: the shards not yet written need about" in line and "KiB free" in line
    assert str(fs.path / "c" / "audio") in line
    small = tiny_fs("12k")  # caption shards are small: a smaller disk
    line = one_error_line(prep("captions", dataset, small.path / "c"))
    assert f"error: {small.path / 'c'}: no space left on device: the caption shards and translations need" in line

    fs.resize("8m")  # space freed: the same commands finish the same caches
    small.resize("8m")
    assert prep("audio", dataset, fs.path / "c").returncode == 0
    assert prep("captions", dataset, small.path / "c").returncode == 0
    prep("audio", dataset, tmp_path / "ref", check=True)
    prep("captions", dataset, tmp_path / "ref", check=True)
    assert shard_sums(fs.path / "c", "audio") == shard_sums(tmp_path / "ref", "audio")
    assert shard_sums(small.path / "c", "captions") == shard_sums(tmp_path / "ref", "captions")
    assert run_cli("cache", "verify", fs.path / "c").returncode == 0


# Root ignores mode bits through CAP_DAC_OVERRIDE; without it (util-linux setpriv) root meets them like anyone.
NO_DAC_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def test_permission_denied_is_one_line(dataset):
    locked = Path(tempfile.mkdtemp(prefix="audioret-locked-"))
    try:
        os.chmod(locked, 0o555)  # readable, but nothing may be created in it
        prefix = []
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without util-linux setpriv to drop CAP_DAC_OVERRIDE")
            prefix = NO_DAC_OVERRIDE
            probe = subprocess.run([*prefix, "mkdir", str(locked / "probe")], capture_output=True)
            if probe.returncode == 0:
                pytest.skip("root still bypasses permissions here (setpriv could not drop CAP_DAC_OVERRIDE)")
        for kind in ("audio", "captions"):
            extra = ["--workers", "1", "--no-progress"] if kind == "audio" else []
            proc = subprocess.run([*prefix, *cli_cmd("prep", kind, "--dataset", "manifest", "--manifest", dataset,
                                                     "--cache", locked / "cache", *extra)],
                                  capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=300)
            line = one_error_line(proc)
            assert f"error: {locked / 'cache'}" in line and line.endswith(": permission denied"), line
    finally:
        os.chmod(locked, 0o755)
        shutil.rmtree(locked, ignore_errors=True)


def test_training_on_a_full_disk_says_no_space_naming_the_checkpoint(demo_cache, tiny_fs):
    fs = tiny_fs("256k")  # the run's small files fit, a checkpoint (~1 MB) does not
    proc = run_cli("train", "--cache", demo_cache, "--name", "demo", "--out", fs.path / "run", *fast_overrides(1),
                   "--no-progress")
    line = one_error_line(proc)
    assert line.startswith(f"error: {fs.path / 'run' / 'checkpoints'}/") and ".pt: no space left on device" in line
    assert "unexpected pos" not in proc.stderr

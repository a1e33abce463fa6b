"""`audioret prep audio` end to end in real subprocesses on real (and deliberately broken) audio files."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioret.cache.audio_shards import AudioCache
from audioret.cache.locks import CacheLock, is_locked
from audioret.cache.manifest import Manifest, cache_dir_for
from audioret.pipeline.audio_io import file_log_mel
from audioret.pipeline.datasets import load_records
from audioret.pipeline.prep_audio import compute_key
from support import AUDIO, cli_cmd, cli_env, run_cli
from support.prep import check_cache, make_clips, write_manifest

LOCK_MESSAGE = "cache is being written by another process"


def prep(manifest: Path, cache: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
    return run_cli("prep", "audio", "--dataset", "manifest", "--manifest", manifest, "--cache", cache,
                   "--no-progress", *extra, **kw)


def printed_dir(proc: subprocess.CompletedProcess) -> Path:
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """Good clips with awkward names (MP3, stereo FLAC, 8 kHz WAV) next to every kind of broken input."""
    d = tmp_path / "messy"
    d.mkdir()
    shutil.copy(AUDIO / "animals_cc0" / "cat.mp3", d / "dog barks, loud.mp3")
    shutil.copy(AUDIO / "sonic_pi_cc0" / "loop_amen.flac", d / "Grüße café.flac")  # stereo 44.1 kHz
    shutil.copy(AUDIO / "fsdd_ccbysa" / "0_george_0.wav", d / "eight k.wav")  # 8 kHz
    shutil.copy(AUDIO / "fsdd_ccbysa" / "1_jackson_0.wav", d / "zz last.wav")
    header = bytearray((AUDIO / "fsdd_ccbysa" / "2_lucas_0.wav").read_bytes())
    header[8:40] = b"\xff" * 32
    (d / "corrupt.wav").write_bytes(bytes(header))
    flac = (AUDIO / "sonic_pi_cc0" / "loop_amen.flac").read_bytes()
    (d / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    (d / "empty.wav").write_bytes(b"")
    sf.write(str(d / "zero.wav"), np.zeros(0, dtype=np.float32), 16000)
    (d / "text.wav").write_text("this is not audio\n")
    names = sorted(p.name for p in d.iterdir()) + ["gone.wav"]
    return write_manifest(d / "clips.csv", [d / n for n in names])


BAD = {"corrupt.wav", "truncated.flac", "empty.wav", "zero.wav", "text.wav", "gone.wav"}
GOOD = ["Grüße café.flac", "dog barks, loud.mp3", "eight k.wav", "zz last.wav"]


def test_bad_inputs_are_reported_and_the_rest_completes(messy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = prep(messy, cache, "--shard-size", "3", "--workers", "2")
    assert proc.returncode == 3, proc.stderr
    cache_dir = printed_dir(proc)
    assert cache_dir.parent == cache / "audio"
    failures = [json.loads(line) for line in (cache_dir / "failures.jsonl").read_text("utf-8").splitlines()]
    assert sorted(Path(f["file"]).name for f in failures) == sorted(BAD)
    for fail in failures:
        assert f"{fail['file']}: {fail['error']}" in proc.stderr
    by_name = {Path(f["file"]).name: f["error"] for f in failures}
    assert by_name["gone.wav"] == "audio file missing" and "zero-length" in by_name["zero.wav"]

    m = check_cache(cache_dir)
    assert run_cli("cache", "verify", cache).returncode == 0
    assert sorted(f["file"] for f in m.extra["failures"] + m.extra["problems"]) == sorted(f["file"]
                                                                                          for f in failures)
    ac = AudioCache(cache_dir)
    assert sorted(ac.clip_ids) == GOOD
    for name in GOOD:
        src = messy.parent / name
        expected = file_log_mel(src).astype(np.float16)
        assert np.array_equal(np.asarray(ac.get(name)), expected), name
        assert m.extra["durations"][name] == pytest.approx(sf.info(str(src)).duration, abs=0.002)
    assert all(np.isfinite(np.asarray(ac.get(i), dtype=np.float32)).all() for i in range(len(ac)))

    # A finished cache: the re-run is a no-op that prints the same directory and repeats the partial status.
    mtimes = {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("shard-*.h5")}
    again = prep(messy, cache)
    assert again.returncode == 3 and printed_dir(again) == cache_dir and "nothing to do" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("shard-*.h5")} == mtimes

    # Touching one source changes its fingerprint: a new key, a new directory; the old cache stays intact.
    st = os.stat(messy.parent / "eight k.wav")
    os.utime(messy.parent / "eight k.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = prep(messy, cache, "--shard-size", "3", "--workers", "1")
    assert touched.returncode == 3 and printed_dir(touched) != cache_dir
    check_cache(printed_dir(touched))
    check_cache(cache_dir)


def test_passt_features_get_their_own_128_bin_cache(tmp_path: Path) -> None:
    from audioret.pipeline.audio_io import load_mono
    from audioret.pipeline.passt_features import passt_mel

    srcs = [AUDIO / "animals_cc0" / "cat.mp3", AUDIO / "sonic_pi_cc0" / "loop_amen.flac",
            AUDIO / "fsdd_ccbysa" / "0_george_0.wav"]
    for src in srcs:
        shutil.copy(src, tmp_path / src.name)
    man = write_manifest(tmp_path / "clips.csv", [tmp_path / s.name for s in srcs])
    passt = prep(man, tmp_path / "cache", "--features", "passt", "--workers", "1")
    panns = prep(man, tmp_path / "cache", "--workers", "1")
    assert passt.returncode == 0 == panns.returncode, passt.stderr + panns.stderr
    assert printed_dir(passt) != printed_dir(panns)  # another definition, another key
    m = check_cache(printed_dir(passt))
    assert m.config["feature"] == "passt-mel" and m.code_version == m.config["feature_version"]
    ac = AudioCache(printed_dir(passt))
    assert ac.n_mels == 128 and AudioCache(printed_dir(panns)).n_mels == 64
    for src in srcs:
        want = passt_mel(load_mono(src)).astype(np.float16)
        assert np.array_equal(np.asarray(ac.get(src.name)), want), src.name
    assert run_cli("cache", "verify", tmp_path / "cache").returncode == 0
    bad = prep(man, tmp_path / "cache", "--features", "mfcc")
    assert bad.returncode == 2 and "unknown features 'mfcc'" in bad.stderr


def test_key_covers_mtime_content_split_and_name(tmp_path: Path) -> None:
    clips = make_clips(tmp_path / "clips", 3, seconds=0.5)
    man = write_manifest(tmp_path / "clips" / "m.csv", clips)
    records, _ = load_records("manifest", tmp_path, man)
    key = compute_key(records, tmp_path, "manifest", "x")
    assert key == compute_key(records, tmp_path, "manifest", "x")
    assert key != compute_key(records, tmp_path, "manifest", "y")
    assert key != compute_key(records, tmp_path, "manifest", "x", content_hash=True)
    records[0].split = "evaluation"
    assert key != compute_key(records, tmp_path, "manifest", "x")
    records[0].split = "development"
    st = os.stat(clips[1])
    os.utime(clips[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert key != compute_key(records, tmp_path, "manifest", "x")


def test_locked_cache_is_refused_or_waited_for(tmp_path: Path) -> None:
    clips = make_clips(tmp_path / "clips", 2, seconds=0.5)
    man = write_manifest(tmp_path / "clips" / "m.csv", clips)
    records, _ = load_records("manifest", man.parent, man)
    cache_dir = cache_dir_for(tmp_path / "cache", "audio", compute_key(records, man.parent, "manifest", "manifest"))
    lock = CacheLock(cache_dir).acquire()
    try:
        refused = prep(man, tmp_path / "cache")
        assert refused.returncode == 1 and LOCK_MESSAGE in refused.stderr and str(cache_dir) in refused.stderr
        assert not (cache_dir / "manifest.json").exists()
        threading.Timer(1.5, lock.release).start()
        waited = prep(man, tmp_path / "cache", "--wait-lock", "60", "--workers", "1")
    finally:
        lock.release()
    assert waited.returncode == 0, waited.stderr
    assert printed_dir(waited) == cache_dir
    check_cache(cache_dir)


def test_usage_errors_name_the_problem(tmp_path: Path) -> None:
    bad_kind = run_cli("prep", "audio", "--dataset", "nope", "--root", tmp_path, "--cache", tmp_path)
    assert bad_kind.returncode == 2 and "unknown dataset 'nope'" in bad_kind.stderr
    no_csv = run_cli("prep", "audio", "--dataset", "clotho", "--root", tmp_path, "--cache", tmp_path / "c")
    assert no_csv.returncode == 1 and "clotho_captions_" in no_csv.stderr
    (tmp_path / "none.csv").write_text("split,file_name\ndevelopment,gone.wav\n")
    empty = prep(tmp_path / "none.csv", tmp_path / "c")
    assert empty.returncode == 1 and "gone.wav: audio file missing" in empty.stderr
    assert "no usable audio clips" in empty.stderr
    assert "Example" in run_cli("prep", "audio", "--help").stdout


def start(manifest: Path, cache: Path) -> subprocess.Popen:
    """A prep run in its own session, so kill -9 can take the whole job (parent and workers) at once."""
    # --wait-lock: a writer killed a moment ago, or a test probe, may hold the lock for an instant; the job waits.
    cmd = cli_cmd("prep", "audio", "--dataset", "manifest", "--manifest", str(manifest), "--cache", str(cache),
                  "--shard-size", "2", "--workers", "2", "--no-progress", "--wait-lock", "30")
    return subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def holds_lock(cache_dir: Path, pid: int) -> bool:
    """`pid` holds the writer lock. The lock file names its holder once it has the lock; only then probe, so the
    probe (which takes the lock for an instant) never races the job's own acquire."""
    try:
        return (cache_dir / ".lock").read_text().strip() == str(pid) and is_locked(cache_dir)
    except OSError:
        return False


def shards_marked(cache_dir: Path) -> int:
    try:
        return sum(s.complete for s in Manifest.read(cache_dir).shards)
    except (OSError, ValueError):
        return -1


def kill_when(proc: subprocess.Popen, ready, timeout: float = 60.0) -> bool:
    """kill -9 the job as soon as `ready()` holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    proc.wait()
    return False


def test_kill9_at_several_moments_then_resume_is_bit_identical(tmp_path: Path) -> None:
    clips = make_clips(tmp_path / "clips", 48, seconds=2.0)
    man = write_manifest(tmp_path / "clips" / "m.csv", clips)
    ref = prep(man, tmp_path / "ref", "--shard-size", "2", "--workers", "2")
    assert ref.returncode == 0, ref.stderr
    ref_dir = printed_dir(ref)
    cache_dir = tmp_path / "cache" / "audio" / ref_dir.name
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    delay = float(rng.uniform(0.3, 2.0))

    moments = [
        ("manifest written, no shard yet", lambda: shards_marked(cache_dir) == 0),
        ("three more shards done", lambda: shards_marked(cache_dir) >= 3 + done_before),
        (f"{delay:.2f} s after the start", lambda: time.monotonic() - t0 > delay),
    ]
    killed, job = 0, None
    try:
        for label, ready in moments:
            done_before = max(shards_marked(cache_dir), 0)
            t0 = time.monotonic()
            job = start(man, tmp_path / "cache")
            if label.startswith("three"):  # while it runs, a second prep on the same cache must refuse
                while job.poll() is None and not holds_lock(cache_dir, job.pid):
                    time.sleep(0.01)
                assert job.poll() is None, f"the job ended before locking the cache: {job.communicate()[1].decode()}"
                # Paused (lock held) while the second prep runs: on a loaded machine the job could otherwise finish
                # first, and then the second would find a finished cache and this moment could not kill it.
                os.killpg(job.pid, signal.SIGSTOP)
                try:
                    second = prep(man, tmp_path / "cache", "--shard-size", "2")
                finally:
                    os.killpg(job.pid, signal.SIGCONT)
                assert second.returncode == 1 and LOCK_MESSAGE in second.stderr, second.stderr
            killed += kill_when(job, ready)
            assert shards_marked(cache_dir) >= -1  # the manifest is always either absent or whole JSON
    finally:  # a failed check above must not leave the job running (and loading the machine) after the test
        if job is not None and job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert killed >= 2, "the job finished before it could be killed: make the clip set larger"

    final = prep(man, tmp_path / "cache", "--shard-size", "2", "--workers", "2")
    assert final.returncode == 0, final.stderr
    assert printed_dir(final) == cache_dir
    verify = run_cli("cache", "verify", tmp_path / "cache", cache_dir.name)
    assert verify.returncode == 0 and "ok" in verify.stdout, verify.stdout + verify.stderr
    m, m_ref = check_cache(cache_dir), check_cache(ref_dir)
    assert [s.sha256 for s in m.shards] == [s.sha256 for s in m_ref.shards]
    assert m.extra["durations"] == m_ref.extra["durations"]
    feats, offsets, ids = AudioCache(cache_dir).load_all()
    ref_feats, ref_offsets, ref_ids = AudioCache(ref_dir).load_all()
    assert ids == ref_ids and np.array_equal(offsets, ref_offsets)
    assert feats.tobytes() == ref_feats.tobytes()


def test_kill9_of_the_parent_alone_frees_the_lock_while_its_workers_live(tmp_path: Path) -> None:
    """kill -9 of the prep process only (its two pool workers live on): the lock dies with it, so a re-run at once
    is not refused and redoes only the shards the killed run had not finished."""
    clips = make_clips(tmp_path / "clips", 24, seconds=2.0)
    man = write_manifest(tmp_path / "clips" / "m.csv", clips)
    job = start(man, tmp_path / "cache")
    try:
        cache_dir = None
        deadline = time.monotonic() + 120
        while job.poll() is None and time.monotonic() < deadline:
            locks = list((tmp_path / "cache" / "audio").glob("*/.lock"))
            if locks and holds_lock(locks[0].parent, job.pid) and shards_marked(locks[0].parent) >= 1:
                cache_dir = locks[0].parent
                break
            time.sleep(0.01)
        assert cache_dir is not None and job.poll() is None, "the job ended before it could be killed"
        os.killpg(job.pid, signal.SIGSTOP)  # the workers stay alive (stopped) while the parent dies
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
        done_before = shards_marked(cache_dir)
        workers = subprocess.run(["pgrep", "-g", str(job.pid)], capture_output=True, text=True).stdout.split()
        assert workers, "the pool workers should outlive their parent"
        assert not is_locked(cache_dir)
        os.killpg(job.pid, signal.SIGCONT)  # they notice their parent is gone and exit (cache/executor.py)
        again = prep(man, tmp_path / "cache", "--shard-size", "2", "--workers", "2")
    finally:
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert again.returncode == 0, again.stderr
    assert printed_dir(again) == cache_dir
    written, present = map(int, re.search(r"(\d+) shards written, (\d+) already present", again.stderr).groups())
    assert present >= done_before >= 1 and written + present == 12 and written >= 1
    check_cache(cache_dir)

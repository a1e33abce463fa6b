"""One writer per run directory: two real `train` processes on one --out, --wait-lock, and multi-rank runs
(the torch launcher) that must fail together, never hang, when the directory is busy."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from audioret.cache.locks import CacheLock, is_locked
from support import cli_cmd, cli_env, run_cli
from support.demo import fast_overrides


def _epochs(run) -> list[int]:
    with open(run / "metrics.csv", newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def _wait_for_lock(run, proc, timeout: float = 120) -> None:
    """Until `proc` holds RUN_DIR's lock (its pid is in the lock file and the flock is taken)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if (run / ".lock").read_text().strip() == str(proc.pid) and is_locked(run):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"train did not take the run lock (exit {proc.poll()})")


def test_second_train_on_one_out_is_refused_and_a_waiting_resume_runs_after(demo_cache, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--cache", demo_cache, "--name", "demo", "--out", run, *fast_overrides(1), "--no-progress"]
    first = subprocess.Popen(cli_cmd(*args), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    waiting = None
    try:
        _wait_for_lock(run, first)
        os.kill(first.pid, signal.SIGSTOP)  # keep the first run mid-way, however fast this machine is
        second = run_cli(*args)
        assert second.returncode == 1, second.stderr
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in second.stderr
        assert f"run directory {run} is in use by pid {first.pid}" in err[0] and "--wait-lock" in err[0]
        # --resume --wait-lock waits for the first run to end, then finds it finished: no training, no new rows
        waiting = subprocess.Popen(cli_cmd(*args, "--resume", "--wait-lock", "600"), env=cli_env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        assert waiting.poll() is None  # still waiting for the lock
        os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
        assert waiting.wait(timeout=600) == 0, waiting.stderr.read()[-2000:]
    finally:
        for p in (first, waiting):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
    assert "at epoch 1 (1 epochs)" in waiting.stdout.read()
    assert _epochs(run) == [1]


def test_busy_run_dir_fails_every_rank_of_a_distributed_run(demo_cache, tmp_path):
    run = tmp_path / "ddp"
    args = ["train", "--cache", demo_cache, "--name", "demo", "--out", run, *fast_overrides(1, ["batch_size=4"]),
            "--no-progress"]
    with CacheLock(run):  # this test process is the "other run"
        # `--nproc 2`: the launcher refuses before starting any rank
        t0 = time.monotonic()
        proc = run_cli(*args, "--nproc", "2", timeout=120)
        assert proc.returncode == 1 and f"is in use by pid {os.getpid()}" in proc.stderr
        assert time.monotonic() - t0 < 60
        # ranks started by torch's launcher directly (as torchrun/srun do): rank 0 finds the directory busy and
        # every rank exits with the error instead of waiting in a collective for a rank 0 that gave up
        direct = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                 "--nproc-per-node=2", "--module", "audioret", *map(str, args)],
                                env=cli_env(), capture_output=True, text=True, timeout=240)
        assert direct.returncode != 0
        assert direct.stderr.count("is in use by pid") == 2, direct.stderr[-3000:]
    assert not (run / "metrics.csv").exists()


HOLD_AND_FORK = """
import os, sys, time
from audioret.cache.locks import CacheLock
CacheLock(sys.argv[1], owner_only=sys.argv[2] == "1").acquire()
if os.fork() == 0:  # a DataLoader-like worker that outlives its parent for a while
    print(os.getpid(), flush=True)  # after the fork hooks ran
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


@pytest.mark.parametrize("owner_only", [True, False])
def test_owner_only_lock_dies_with_its_holder_not_with_its_forked_children(tmp_path, owner_only):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_AND_FORK, str(tmp_path), "1" if owner_only else "0"],
                            env=cli_env(), stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        assert is_locked(tmp_path)
        proc.kill()  # kill -9 of the holder; its forked child lives on
        proc.wait()
        os.kill(child, 0)
        assert is_locked(tmp_path) is (not owner_only)  # a training run's resume is not blocked by its workers
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_usage_error_after_the_lock_leaves_no_run_directory_behind(demo_cache, tmp_path):
    """`--extra` without `--name` is found once the run holds its lock: exit 2, and neither RUN/.lock nor the
    directory it created stays; in an existing directory only the lock file goes."""
    run = tmp_path / "new-run"
    proc = run_cli("train", "--cache", demo_cache, "--out", run, "--extra", "demo", *fast_overrides(1),
                   "--no-progress")
    assert proc.returncode == 2 and "needs --name" in proc.stderr, proc.stderr
    assert not run.exists()
    kept = tmp_path / "mine"
    (kept / "notes").mkdir(parents=True)
    proc = run_cli("train", "--cache", demo_cache, "--out", kept, "--extra", "demo", *fast_overrides(1),
                   "--no-progress")
    assert proc.returncode == 2
    assert sorted(p.name for p in kept.iterdir()) == ["notes"]


REMOVE_AFTER = """
import sys, time
from audioret.cache.locks import CacheLock
lock = CacheLock(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.readline()
lock.release(remove=True)
"""


def test_a_waiter_never_keeps_a_lock_file_its_holder_removed(tmp_path):
    """Holder A removes the lock file as it releases while B waits on it: B must lock the file now at the path
    (else C, opening a fresh file, would hold the "same" lock beside B)."""
    holder = subprocess.Popen([sys.executable, "-c", REMOVE_AFTER, str(tmp_path)], env=cli_env(), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked"
        waiter = CacheLock(tmp_path, wait=30, poll=0.02)
        got = threading.Thread(target=waiter.acquire)
        got.start()
        time.sleep(0.3)  # the waiter now polls the holder's file
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
        got.join(timeout=30)
        assert is_locked(tmp_path)  # the file at the path is the locked one
        with pytest.raises(Exception, match="being written"):
            CacheLock(tmp_path, wait=0).acquire()
        waiter.release()
    finally:
        if holder.poll() is None:
            holder.kill()

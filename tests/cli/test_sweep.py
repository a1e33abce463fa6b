"""`audioret sweep` for real (CLI subprocess, cheap real objective): variant × seed runs, mean ± std tables,
failed runs reported (exit 3) and retried on resume, a changed variant definition refused (exit 2)."""
from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import time

import pytest

from audioret.trainer.search.sweep import SweepError, parse_variant
from support import cli_cmd, cli_env, run_cli

OBJ = ["--objective", "tests.support.search_objectives:EvalScores"]


def test_sweep_table_resume_and_failures(tmp_path):
    out = tmp_path / "sw"
    args = ["sweep", "--out", out, *OBJ, "--seeds", "2", "--workers", "2",
            "--variant", "full", "--variant", "no_gain:g_max=0", "--variant", "broken:boom=1"]
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "broken seed 0 FAILED: RuntimeError: variant asked to fail" in r.stderr
    rows = {row["variant"]: row for row in csv.DictReader((out / "table.csv").open())}
    maps = [0.2 + 0.01 * 3 + 0.001 * s for s in (0, 1)]  # EvalScores for the default g_max=3, seeds 0 and 1
    assert float(rows["full"]["map10_mean"]) == pytest.approx(statistics.fmean(maps), abs=1e-6)
    assert float(rows["full"]["map10_std"]) == pytest.approx(statistics.stdev(maps), abs=1e-6)
    assert float(rows["no_gain"]["map10_mean"]) == pytest.approx(0.2005, abs=1e-6)
    assert rows["broken"]["seeds"] == "0" and rows["broken"]["failed"] == "2"
    md = (out / "table.md").read_text()
    assert "| full | 2 | 0.115 ± 0.000 | 0.461 ± 0.001 | 0.692 ± 0.002 | 0.231 ± 0.001 |" in md
    assert (out / "runs" / "no_gain" / "seed1").is_dir()
    n_events = len((out / "trials.jsonl").read_text().splitlines())

    again = run_cli(*args[:-2], cwd=tmp_path)  # same sweep without the broken variant: nothing to run
    assert again.returncode == 0 and "0 to do" in again.stderr
    assert len((out / "trials.jsonl").read_text().splitlines()) == n_events
    retry = run_cli(*args, cwd=tmp_path)  # failed runs are retried (and fail again)
    assert retry.returncode == 3 and "2 to do" in retry.stderr
    started = [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines()
               if '"started"' in x and '"full"' in x]
    assert len(started) == 2  # finished runs never repeated

    changed = run_cli("sweep", "--out", out, *OBJ, "--seeds", "2", "--variant", "full:g_max=1", cwd=tmp_path)
    assert changed.returncode == 2 and "variant 'full' was run with" in changed.stderr


def test_pool_worker_killed_mid_run_fails_that_run_and_the_sweep_goes_on(tmp_path):
    """kill -9 of the local pool worker running one run (what the OOM killer does): that run is journalled as
    failed with a clear error, a fresh pool runs the rest, and the table is written (exit 3: partial)."""
    out = tmp_path / "sw"
    proc = subprocess.Popen(cli_cmd("sweep", "--out", out, *OBJ, "--seeds", "1", "--workers", "1",
                                    "--variant", "lost:hang=60", "--variant", "a", "--variant", "b:g_max=0"),
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    pid_file = out / "runs" / "lost" / "seed0" / "pid"
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert pid_file.exists(), proc.communicate(timeout=5)
    time.sleep(0.05)  # the write may be in progress
    victim = int(pid_file.read_text())
    assert victim != proc.pid  # a pool worker, not the driver
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert "lost seed 0 FAILED: worker process died" in err

    runs = {}
    for e in map(json.loads, (out / "trials.jsonl").read_text().splitlines()):
        if e["event"] in ("finished", "failed"):
            runs[e["extra"]["variant"]] = e
    assert runs["lost"]["event"] == "failed" and "BrokenProcessPool" in runs["lost"]["error"]
    assert runs["a"]["event"] == runs["b"]["event"] == "finished"
    assert victim not in {runs["a"]["metrics"]["pid"], runs["b"]["metrics"]["pid"]}  # ran in the fresh pool
    rows = {row["variant"]: row for row in csv.DictReader((out / "table.csv").open())}
    assert (rows["lost"]["seeds"], rows["lost"]["failed"]) == ("0", "1")
    assert float(rows["b"]["map10_mean"]) == pytest.approx(0.2, abs=1e-9)


def test_variant_parsing():
    assert parse_variant("no_aug:n_t=0,p_ms=0.5,device=cpu") == ("no_aug", {"n_t": 0, "p_ms": 0.5, "device": "cpu"})
    assert parse_variant("baseline") == ("baseline", {})
    for bad in ("bad name:x=1", "v:x", "v:seed=1"):
        with pytest.raises(SweepError):
            parse_variant(bad)
    r = run_cli("sweep", "--out", "unused", *OBJ, "--variant", "v:x")
    assert r.returncode == 2 and "is not key=value" in r.stderr

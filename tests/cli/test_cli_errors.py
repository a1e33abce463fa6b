"""The shared one-line error report (audioret/cli/errors.py): expected failures, bugs, and AUDIORET_DEBUG."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import click
import pytest

from audioret.cache.locks import is_locked
from audioret.cache.manifest import CacheNotFoundError
from audioret.cli.errors import describe, invoke_reporting_errors
from support import cli_cmd, cli_env, run_cli


def test_os_errors_name_the_path_and_the_blocking_file(tmp_path):
    with pytest.raises(OSError) as missing:
        open(tmp_path / "nope.h5", "rb")
    assert describe(missing.value) == f"{tmp_path / 'nope.h5'}: no such file or directory"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as under_file:
        (tmp_path / "file" / "cache" / "audio").mkdir(parents=True)
    assert describe(under_file.value).endswith(f"not a directory ({tmp_path / 'file'} is a regular file)")


def test_project_errors_are_plain_and_bugs_are_marked_unexpected():
    assert describe(CacheNotFoundError("caches/: no complete audio cache\nmore")) == "caches/: no complete audio cache"
    assert describe(KeyError("clip 'x' is not in audio cache d")) == "clip 'x' is not in audio cache d"
    assert describe(TypeError("bad operand")) == \
        "unexpected TypeError: bad operand (set AUDIORET_DEBUG=1 for the traceback)"


def test_failures_exit_1_with_one_line_unless_debugging(capsys, monkeypatch):
    monkeypatch.delenv("AUDIORET_DEBUG", raising=False)
    with pytest.raises(click.exceptions.Exit) as exited:
        invoke_reporting_errors(lambda: 1 / 0)
    assert exited.value.exit_code == 1
    assert capsys.readouterr().err == \
        "error: unexpected ZeroDivisionError: division by zero (set AUDIORET_DEBUG=1 for the traceback)\n"
    with pytest.raises(click.exceptions.Exit) as interrupted:  # Ctrl-C: 130, the shell convention
        invoke_reporting_errors(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert interrupted.value.exit_code == 130 and capsys.readouterr().err == "interrupted\n"
    monkeypatch.setenv("AUDIORET_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        invoke_reporting_errors(lambda: 1 / 0)


@pytest.mark.parametrize("command", [("train",), ("eval",), ("retrieve",), ("predict",), ("report",), ("search",),
                                     ("sweep",), ("preview", "audio"), ("preview", "captions")])
def test_every_command_that_reads_shards_can_skip_their_check(command):
    """Readers verify shard payloads by default (cache/integrity.py); each command that reads shards offers the
    documented way out, --no-verify."""
    from click.testing import CliRunner

    from audioret.cli import main

    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--no-verify" in result.output


def test_a_closed_stdout_pipe_ends_quietly_with_exit_0(tmp_path):
    """`audioret cache ls CACHE | head -2`: the reader is gone before (or while) the listing is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE, as after `head` has exited
    try:
        proc = subprocess.run(cli_cmd("cache", "ls", tmp_path), stdout=write_end, stderr=subprocess.PIPE, text=True,
                              env=cli_env(), timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_cache_ls_of_a_missing_folder_is_a_usage_error_like_gc(tmp_path):
    for command in ("ls", "gc"):
        proc = run_cli("cache", command, tmp_path / "missing")
        assert proc.returncode == 2 and "does not exist" in proc.stderr, (command, proc.stderr)


def test_ctrl_c_says_interrupted_and_exits_130(tmp_path):
    """SIGINT to a running `prep audio` (mid-way, holding its cache lock): one line, exit 130, lock released."""
    from support.prep import make_clips, write_manifest

    clips = make_clips(tmp_path / "clips", 40, seconds=2.0)
    man = write_manifest(tmp_path / "clips" / "m.csv", clips)
    proc = subprocess.Popen(cli_cmd("prep", "audio", "--dataset", "manifest", "--manifest", man, "--cache",
                                    tmp_path / "cache", "--shard-size", "1", "--workers", "1", "--no-progress"),
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            locks = list((tmp_path / "cache" / "audio").glob("*/.lock"))
            if locks and locks[0].read_text().strip() == str(proc.pid):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "prep ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Aborted" not in err and "Traceback" not in err
    assert not is_locked(locks[0].parent)

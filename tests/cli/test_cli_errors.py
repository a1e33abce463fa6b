"""The shared one-line error report (audioret/cli/errors.py): expected failures, bugs, and AUDIORET_DEBUG."""
from __future__ import annotations

import click
import pytest

from audioret.cache.manifest import CacheNotFoundError
from audioret.cli.errors import describe, invoke_reporting_errors


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
    with pytest.raises(KeyboardInterrupt):  # never swallowed: Click reports it as "Aborted!"
        invoke_reporting_errors(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
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

"""One line per failure, for every command: how an exception becomes `error: <path>: <problem>` and exit 1.

Why one place: a command that forgot an exception type used to print a long traceback that did not name the file.
The top-level group (`AudioretGroup` in groups.py) runs every command through `invoke_reporting_errors`, so a new
command gets the same treatment without code of its own. Ctrl-C exits 130 (`interrupted`), a closed stdout pipe
exits 0. Which exceptions are expected, what a bug prints, and AUDIORET_DEBUG: docs/reliability.md.
"""
from __future__ import annotations

import errno
import os
import select
import sys
import warnings
from pathlib import Path
from typing import Callable, NoReturn, TypeVar

import click

DEBUG_ENV = "AUDIORET_DEBUG"
EXIT_INTERRUPTED = 130  # 128 + SIGINT
PROJECT_PACKAGES = ("audioret",)
T = TypeVar("T")


def is_expected(exc: BaseException) -> bool:
    """An error with a message meant for the user (see the module docstring), as opposed to a bug."""
    if isinstance(exc, (OSError, ValueError, KeyError, RuntimeError)):
        return True
    return any(cls.__module__.split(".")[0] in PROJECT_PACKAGES for cls in type(exc).__mro__)


def os_error_line(exc: OSError) -> str:
    """`<path>: <problem>` for an OSError that carries a file name (its first line otherwise)."""
    if exc.filename is None or not exc.strerror:
        if exc.errno == errno.ENOSPC and not str(exc).strip():
            return "no space left on device"
        return _first_line(exc)
    path = os.fsdecode(exc.filename)
    problem = exc.strerror[:1].lower() + exc.strerror[1:]
    if exc.errno == errno.ENOTDIR:
        blocker = next((p for p in [Path(path), *Path(path).parents] if p.is_file()), None)
        if blocker is not None:
            problem += f" ({blocker} is a regular file)"
    if exc.filename2 is not None:
        path = f"{path} -> {os.fsdecode(exc.filename2)}"
    return f"{path}: {problem}"


def _first_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc
    lines = str(text).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def describe(exc: BaseException) -> str:
    """The one line printed after `error: ` for `exc`."""
    line = os_error_line(exc) if isinstance(exc, OSError) else _first_line(exc)
    if not is_expected(exc):
        line = f"unexpected {type(exc).__name__}: {line} (set {DEBUG_ENV}=1 for the traceback)"
    return line


def _stdout_closed() -> bool:
    """True when stdout is a pipe whose reader has gone (poll reports an error on its write end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def invoke_reporting_errors(invoke: Callable[[], T]) -> T:
    """Run a command; an exception becomes one `error: ...` line on stderr and exit 1 (unless AUDIORET_DEBUG)."""
    try:
        return invoke()
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except KeyboardInterrupt:  # Ctrl-C: the shell convention (128 + SIGINT), not Click's "Aborted!" and 1
        if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
            raise
        click.echo("interrupted", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            # `audioret cache ls | head -2`: the reader has all it wants; nothing more can be said on stdout
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit-time flush stays quiet too
            raise click.exceptions.Exit(0) from None
        if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
            raise
        click.echo(f"error: {describe(exc)}", err=True)
        raise click.exceptions.Exit(1) from None


def fail(msg: str, code: int = 1) -> NoReturn:
    """A failure a command reports itself: `error: <msg>` on stderr and exit `code` (e.g. 2 for a bad config)."""
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


def one_line_warnings() -> None:
    """Warnings (e.g. "p_bt treated as 0") as one `warning: ...` line on stderr, without a source-code echo."""
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"

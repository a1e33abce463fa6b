"""The shape of the command line (audioret/cli/): every command and group shows an example in its --help, handlers
are named one way, and every function of the CLI stays short (the work lives in the library layers)."""
from __future__ import annotations

import ast
import re

import click
import pytest
from click.testing import CliRunner

from audioret.cli import main
from support import REPO

EXAMPLE = re.compile(r"^\s*examples?\b.*:", re.IGNORECASE | re.MULTILINE)
MAX_FUNCTION_LINES = 60


def commands(cmd: click.Command = main, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command and group of the Click tree under `cmd`, with the words that invoke it."""
    found = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            found += commands(cmd.commands[name], (*path, name))
    return found


def test_the_tree_holds_every_command():
    names = {" ".join(path) for path, _ in commands()}
    assert names >= {"prep audio", "prep captions", "cache ls", "cache verify", "cache gc", "download clotho",
                     "download dcase2022-retrieval", "train", "eval", "retrieve", "predict", "preview audio",
                     "preview captions", "search", "sweep", "report"}


@pytest.mark.parametrize("path", [path for path, _ in commands()], ids=lambda p: " ".join(p) or "audioret")
def test_every_command_and_group_shows_an_example(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert EXAMPLE.search(result.output), f"`audioret {' '.join(path)} --help` has no Example line"


def handler_name(path: tuple[str, ...], cmd: click.Command) -> str:
    kind = "group" if isinstance(cmd, click.Group) else "command"
    return "_".join([*path, kind]).replace("-", "_") if path else "main"


def test_handlers_are_named_after_their_command():
    wrong = [f"{' '.join(path)}: {cmd.callback.__name__} (expected {handler_name(path, cmd)})"
             for path, cmd in commands() if cmd.callback.__name__ != handler_name(path, cmd)]
    assert wrong == []


def test_every_cli_function_is_short():
    long = []
    for path in sorted((REPO / "audioret" / "cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []

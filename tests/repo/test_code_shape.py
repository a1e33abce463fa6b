"""Code where a reader can take it in: no file over 400 lines and no function over 60 lines (from `def` to the end
of its body, decorators not counted) in any module of audioret/, cache/, pipeline/ and trainer/."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support import REPO

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
ROOTS = ("audioret", "cache", "pipeline", "trainer")


def modules() -> list[Path]:
    return sorted(p for root in ROOTS for p in (REPO / root).rglob("*.py"))


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_module_shape(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.relative_to(REPO)}: {lines} lines (at most {MAX_FILE_LINES})"
    assert long_functions(path) == [], f"{path.relative_to(REPO)}: functions over {MAX_FUNCTION_LINES} lines"


def test_there_are_modules_to_check() -> None:
    assert len(modules()) > 50

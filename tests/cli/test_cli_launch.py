"""`train --nproc N` starts its ranks from the CLI (audioret/cli/launch.py): the launcher's own options never reach
the ranks, and the trainer knows no command-line option names."""
from __future__ import annotations

import ast

from audioret.cli.launch import LAUNCHER_OPTIONS, without_launcher_options
from support import REPO


def test_launcher_options_are_removed_in_both_spellings_and_the_rest_kept_in_order():
    argv = ["train", "--cache", "c", "--nproc", "2", "--out", "r", "--nnodes=1", "--rdzv-endpoint", "h:29500",
            "--set", "epochs=1", "--rdzv-endpoint=h:1", "--nproc=4", "--no-progress"]
    assert without_launcher_options(argv) == ["train", "--cache", "c", "--out", "r", "--set", "epochs=1",
                                              "--no-progress"]


def test_a_value_that_looks_like_an_option_prefix_is_kept():
    assert without_launcher_options(["--name", "--nprocess", "--set", "nproc=2"]) == \
        ["--name", "--nprocess", "--set", "nproc=2"]


def code_strings(path) -> list[str]:
    """The string literals of a module that are not docstrings (what the code uses, not what it says)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_the_trainer_uses_no_launcher_option():
    used = [f"{p.relative_to(REPO)}: {s!r}" for p in sorted((REPO / "trainer").rglob("*.py")) for s in code_strings(p)
            if any(o in s for o in LAUNCHER_OPTIONS)]
    assert used == []

"""MkDocs hook: keep the `\\b` blocks of the Click help (examples, recipe lists) as text blocks in docs/cli.md.

mkdocs-click copies a command's help text into the page as Markdown, where the indented lines of an
"Example:" block would run together into one paragraph. After mkdocs-click has expanded its directive, this
turns each such block (a line ending in ":" followed by lines indented by two or more spaces) into a fenced
text block. Only pages that hold the `::: mkdocs-click` directive are touched.
"""
from __future__ import annotations

import re

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor

DIRECTIVE = "::: mkdocs-click"
_INDENTED = re.compile(r"^ {2,}\S")
_FENCE = re.compile(r"^\s*(```|~~~)")


class _Marker(Preprocessor):
    """Runs before mkdocs-click: remembers whether this page holds its directive."""

    def __init__(self, md: Markdown, state: dict) -> None:
        super().__init__(md)
        self.state = state

    def run(self, lines: list[str]) -> list[str]:
        self.state["active"] = any(line.strip() == DIRECTIVE for line in lines)
        return lines


class _HelpBlocks(Preprocessor):
    """Runs after mkdocs-click: fences the indented lines that follow a line ending in ":"."""

    def __init__(self, md: Markdown, state: dict) -> None:
        super().__init__(md)
        self.state = state

    def run(self, lines: list[str]) -> list[str]:
        if not self.state.get("active"):
            return lines
        out: list[str] = []
        in_fence = False
        i = 0
        while i < len(lines):
            line = lines[i]
            if _FENCE.match(line):
                in_fence = not in_fence
            out.append(line)
            i += 1
            if in_fence or not line.rstrip().endswith(":") or line.startswith(" "):
                continue
            block = []
            while i < len(lines) and _INDENTED.match(lines[i]):
                block.append(lines[i])
                i += 1
            if block:
                out += ["", "```text", *block, "```", ""]
        return out


class ClickHelpBlocks(Extension):
    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 (Python-Markdown's name)
        state: dict = {}
        md.preprocessors.register(_Marker(md, state), "audioret_click_marker", 150)  # mkdocs-click: 141
        md.preprocessors.register(_HelpBlocks(md, state), "audioret_click_blocks", 140)


def on_config(config, **kwargs):
    config.markdown_extensions.append(ClickHelpBlocks())
    return config

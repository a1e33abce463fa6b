"""The documentation site builds with `mkdocs build --strict` (a broken link or anchor fails it), its command
reference names every command of the CLI, and the README's links into the repository point at files that exist."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from support import REPO, cli_env


def build_site(source: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of the mkdocs.yml in `source` into `site`, offline, as `make docs` runs it."""
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=source, capture_output=True, text=True, timeout=300,
                          env=cli_env({"NO_MKDOCS_2_WARNING": "1"}))


def command_paths(command: click.Command, path: tuple[str, ...] = ("audioret",)) -> list[tuple[str, ...]]:
    """Every command of the CLI as its full name, the groups included: ("audioret", "prep", "audio"), ..."""
    found = [path]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += command_paths(sub, path + (name,))
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = build_site(REPO, out)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_reference_has_every_command_with_its_usage_line(site: Path) -> None:
    from audioret.cli import main

    page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    paths = command_paths(main)
    assert len(paths) > 20  # the walk saw the whole tree, not just the top group
    missing = [" ".join(p) for p in paths
               if f'id="{"-".join(p)}"' not in page or f"{' '.join(p)} [OPTIONS]" not in page]
    assert missing == []


def test_reference_keeps_help_examples_as_text_blocks(site: Path) -> None:
    page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    example = re.search(r'<pre>(?:<span></span>)?<code[^>]*>\s*audioret cache gc caches/ +# list what would go\n'
                        r'\s*audioret cache gc caches/ --yes', page)
    assert example, "the indented lines of an Example: block ran together into a paragraph"


def test_site_needs_no_network(site: Path) -> None:
    """No web fonts or scripts fetched from elsewhere: the built pages open offline."""
    remote = []
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        remote += [f"{page.relative_to(site)}: {m}" for m in
                   re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', text)]
    assert remote == []


def test_broken_link_fails_the_build(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO / "docs", source / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "mkdocs.yml", source / "mkdocs.yml")
    page = source / "docs" / "testing.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nSee [the missing page](no-such-page.md).\n",
                    encoding="utf-8")
    proc = build_site(source, tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such-page.md" in proc.stdout + proc.stderr


def test_readme_links_point_at_files_that_exist() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+://", t) and not t.startswith("#")]
    assert local, "the README links into docs/"
    assert [t for t in local if not (REPO / t).exists()] == []

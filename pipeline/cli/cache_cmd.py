"""`audioret cache ls | verify | gc`: what is cached, is it intact, and clean-up of dead writers' leftovers."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from cache.manifest import iter_caches
from cache.publish import human_bytes as _human
from cache.verify import garbage, remove, summarise, verify_cache
from pipeline.cli.groups import EXIT_FAILURE, cache_group


@cache_group.command("ls")
@click.argument("cache_dir", type=click.Path(file_okay=False, path_type=Path))
def ls_cmd(cache_dir: Path) -> None:
    """List every cache under CACHE_DIR: kind, name, dataset, splits, clips, hours, size, key, state.

    \b
    Example:
      audioret cache ls caches/
    """
    rows = summarise(cache_dir)
    if not rows:
        click.echo(f"{cache_dir}: no caches")
        return
    header = ("kind", "name", "dataset", "splits", "clips", "hours", "size", "key", "state")
    table = [header] + [
        (r.kind, r.name, r.dataset, ",".join(r.splits), str(r.clips), f"{r.hours:.2f}", _human(r.size_bytes),
         r.key[:16], r.state)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


@cache_group.command("verify")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("key", required=False)
def verify_cmd(cache_dir: Path, key: str | None) -> None:
    """Re-read every shard and check it against its manifest (checksums, shapes, offsets, attributes).

    Checks every cache under CACHE_DIR, or only the one whose key starts with KEY. Exit 1 names each bad shard.

    \b
    Example:
      audioret cache verify caches/ 3f2a9c1e
    """
    dirs = [d for d, m in iter_caches(cache_dir)
            if key is None or d.name.startswith(key) or (m is not None and m.key.startswith(key))]
    if not dirs:
        click.echo(f"{cache_dir}: no cache" + (f" with key {key}" if key else ""), err=True)
        sys.exit(EXIT_FAILURE)
    bad = 0
    for d in dirs:
        problems = verify_cache(d)
        if problems:
            bad += 1
            for p in problems:
                click.echo(p, err=True)
        else:
            click.echo(f"ok  {d}")
    if bad:
        click.echo(f"{bad} of {len(dirs)} caches failed verification", err=True)
        sys.exit(EXIT_FAILURE)


@cache_group.command("gc")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Delete; without it, only list what would be deleted.")
def gc_cmd(cache_dir: Path, yes: bool) -> None:
    """Remove temp files of dead writers and incomplete caches nobody is writing.

    \b
    Example:
      audioret cache gc caches/          # list what would go
      audioret cache gc caches/ --yes    # delete it
    """
    found = garbage(cache_dir)
    if not found:
        click.echo("nothing to remove")
        return
    for p in found:
        click.echo(("removing " if yes else "would remove ") + str(p))
    if yes:
        for p in remove(found):
            click.echo(f"skipped {p}: a writer is using it now")
    else:
        click.echo("re-run with --yes to delete")

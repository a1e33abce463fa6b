"""`audioret cache ls | verify | gc`: what is cached, is it intact, and clean-up of dead writers' leftovers."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from audioret.cache.gc import HOLDS_FOREIGN, garbage, remove
from audioret.cache.publish import human_bytes as _human
from audioret.cache.runs import read_runs, users
from audioret.cache.verify import caches_matching, summarise, verify_cache
from audioret.cli.groups import EXIT_FAILURE, cache_group


@cache_group.command("ls")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def cache_ls_command(cache_dir: Path) -> None:
    """List every cache under CACHE_DIR (kind, name, dataset, features — the audio feature definition or the
    captions' translator —, splits, clips, hours, size, key, state, how many existing runs use it, and the folder
    the clips were read from), then the runs registered there with every cache each one used.

    \b
    Example:
      audioret cache ls caches/
    """
    rows, records = summarise(cache_dir), read_runs(cache_dir)
    if not rows:
        click.echo(f"{cache_dir}: no caches")
    else:
        header = ("kind", "name", "dataset", "features", "splits", "clips", "hours", "size", "key", "state", "runs",
                  "source")
        _echo_table([header] + [
            (r.kind, r.name, r.dataset, r.features, ",".join(r.splits), str(r.clips), f"{r.hours:.2f}",
             _human(r.size_bytes), r.key[:16], r.state, str(len(users(records, r.kind, r.path.name))), r.source or "-")
            for r in rows
        ])
    if records:
        click.echo(f"\nruns ({len(records)}):")
    for rec in records:
        gone = "" if rec.exists else "  (directory gone: `audioret cache gc` removes this record)"
        click.echo(f"  {rec.run_dir}{gone}")
        _echo_table([(c.role, c.kind, c.name, c.dir_name, "" if (cache_dir / c.kind / c.dir_name).is_dir()
                      else "(no longer in this cache root)") for c in rec.caches], indent="    ")


def _echo_table(table: list[tuple[str, ...]], indent: str = "") -> None:
    if not table:
        return
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


@cache_group.command("verify")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("key", required=False)
def cache_verify_command(cache_dir: Path, key: str | None) -> None:
    """Re-read every shard and check it against its manifest (checksums, shapes, offsets, attributes).

    Checks every cache under CACHE_DIR, or only the one whose key starts with KEY. Exit 1 names each bad shard.

    \b
    Example:
      audioret cache verify caches/ 3f2a9c1e
    """
    dirs = caches_matching(cache_dir, key)
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
def cache_gc_command(cache_dir: Path, yes: bool) -> None:
    """Remove temp files of dead writers, incomplete caches nobody is writing, folder caches superseded by a newer
    cache of the same folder (`predict` / `retrieve --audio-dir` after files changed), and the records of runs
    whose directory is gone. A cache a registered run still uses is never removed (listed as "in use").

    Only what this tool wrote is deleted: folders under audio/ and captions/ not named like a cache key, and
    files inside an incomplete cache that the tool does not write, are listed as "not ours" and left alone.

    \b
    Example:
      audioret cache gc caches/          # list what would go
      audioret cache gc caches/ --yes    # delete it
    """
    plan = garbage(cache_dir)
    for p in plan.foreign:
        click.echo(f"not ours, left alone: {p}")
    for p, run in plan.in_use:
        click.echo(f"in use, left alone: {p} (run {run})")
    if not plan.remove and not plan.emptied:
        click.echo("nothing to remove")
        return
    for p in plan.remove:
        newer = f" (superseded by {plan.superseded[p].name}, the folder's newer cache)" if p in plan.superseded else ""
        click.echo(("removing " if yes else "would remove ") + str(p) + newer)
    for p in plan.emptied:
        click.echo(("removing" if yes else "would remove") + f" the cache files in {p} (the folder stays: "
                   + (HOLDS_FOREIGN if any(f.parent == p for f in plan.foreign) else "a writer's temp file is in it")
                   + ")")
    if yes:
        for p, why in remove(plan.remove + plan.emptied, plan.superseded):
            if not (p in plan.emptied and why == HOLDS_FOREIGN):  # said above
                click.echo(f"kept {p}: {why}")
    else:
        click.echo("re-run with --yes to delete")

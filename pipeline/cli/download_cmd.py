"""`audioret download clotho`: the command line over pipeline.download (argument parsing and exit codes only)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from pipeline.cli.groups import CONTEXT, EXIT_USAGE, download

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def _parse_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    match = _SIZE.match(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a size like 500M or 2G")
    scale = 1024 ** " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * scale)


@download.command("clotho", context_settings=CONTEXT)
@click.option("--root", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to fill: ROOT/{development,validation,evaluation}/*.wav + ROOT/clotho_*.csv.")
@click.option("--splits", default="development,validation,evaluation", show_default=True,
              help="Comma-separated splits to fetch (the LICENSE comes with any).")
@click.option("--keep-archives", is_flag=True, help="Keep the .7z archives after a successful extraction.")
@click.option("--base-url", default=None, metavar="URL",
              help="Fetch from a mirror instead of Zenodo record 4783391: URL/NAME, or a URL containing {name}.")
@click.option("--checksums", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE.json",
              help='Override the built-in size/md5 table for a mirror: {"NAME": {"md5": "...", "size": N}}.')
@click.option("--min-free", default="1G", show_default=True, callback=_parse_size, metavar="SIZE",
              help="Disk space that must stay free after each download/extraction (e.g. 500M, 10G).")
@click.option("--retries", default=5, show_default=True, type=click.IntRange(0, 100),
              help="Retries per file after a dropped connection, timeout or HTTP 5xx (exponential backoff).")
@click.option("--backoff", default=2.0, show_default=True, type=click.FloatRange(0, 600), metavar="SECONDS",
              help="Wait before the first retry; doubled for each further one.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(1, 3600), metavar="SECONDS",
              help="Give up on a read that stalls this long (then retry).")
@click.option("--no-progress", is_flag=True, help="No tqdm progress bars.")
def clotho(root: Path, splits: str, keep_archives: bool, base_url: str | None, checksums: Path | None,
           min_free: int, retries: int, backoff: float, timeout: float, no_progress: bool) -> None:
    """Download Clotho v2.1 (Zenodo 4783391), verify size+md5, extract into the layout `prep` reads.

    Resumable: kill it at any point and run it again; partial files continue with HTTP Range requests,
    verified files are not fetched again, extracted splits are not extracted again. A file whose checksum does
    not match is kept aside as NAME.bad-md5. About 7 GB to download and 11 GB on disk after extraction.

    \b
    Example:
      audioret download clotho --root data/clotho
      audioret download clotho --root data/clotho --splits development,validation --keep-archives
    \b
    Exit codes: 0 ok, 1 failure, 2 usage, 3 partial (see ROOT/download-report.json).
    """
    from pipeline.download import (CLOTHO_FILES, CLOTHO_URL, FetchOptions, UsageError, download_clotho,
                                   load_checksums, parse_splits)

    try:
        split_list = parse_splits(splits)
        table = load_checksums(checksums) if checksums else CLOTHO_FILES
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    opts = FetchOptions(retries=retries, backoff=backoff, timeout=(min(15.0, timeout), timeout),
                        min_free=min_free, progress=not no_progress)
    result = download_clotho(root, split_list, keep_archives=keep_archives, base_url=base_url or CLOTHO_URL,
                             table=table, opts=opts)
    code = result.exit_code()
    if result.fatal:
        click.echo(f"error: {result.fatal}", err=True)
    if code == 0:
        click.echo(f"clotho: {', '.join(split_list)} ready in {root}")
    elif result.failures:
        click.echo(f"{'partial' if code == 3 else 'failed'}: {len(result.failures)} file(s) failed; "
                   f"see {root / 'download-report.json'}", err=True)
    sys.exit(code)

"""`audioret download clotho|dcase2022-retrieval`: the command line over pipeline.download (argument parsing and
exit codes only; the transfer options are one shared definition)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from audioret.cli.groups import CONTEXT, EXIT_USAGE, download_group

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def _parse_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    match = _SIZE.match(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a size like 500M or 2G")
    scale = 1024 ** " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * scale)


def _fetch_options(fn):
    """The options every `download` command shares (where to, mirror, checksums, retries, disk, progress)."""
    options = [
        click.option("--keep-archives", is_flag=True, help="Keep the .7z archives after a successful extraction."),
        click.option("--base-url", default=None, metavar="URL",
                     help="Fetch from a mirror instead of Zenodo: URL/NAME, or a URL containing {name}."),
        click.option("--checksums", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE.json",
                     help='Override the built-in size/md5 table for a mirror: {"NAME": {"md5": "...", "size": N}}.'),
        click.option("--min-free", default="1G", show_default=True, callback=_parse_size, metavar="SIZE",
                     help="Disk space that must stay free after each download/extraction (e.g. 500M, 10G)."),
        click.option("--retries", default=5, show_default=True, type=click.IntRange(0, 100),
                     help="Retries per file after a dropped connection, timeout or HTTP 5xx (exponential backoff)."),
        click.option("--backoff", default=2.0, show_default=True, type=click.FloatRange(0, 600), metavar="SECONDS",
                     help="Wait before the first retry; doubled for each further one."),
        click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(1, 3600), metavar="SECONDS",
                     help="Give up on a read that stalls this long (then retry)."),
        click.option("--no-progress", is_flag=True, help="No tqdm progress bars."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _download(root: Path, splits: list[str] | None, table, default_url: str, what: str, keep_archives: bool,
              base_url: str | None, checksums: Path | None, min_free: int, retries: int, backoff: float,
              timeout: float, no_progress: bool) -> None:
    """Run one table-driven download and exit with its code (0 ok, 1 failure, 2 usage, 3 partial)."""
    from audioret.pipeline.download import FetchOptions, UsageError, download_files, load_checksums

    try:
        table = load_checksums(checksums, table) if checksums else table
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    opts = FetchOptions(retries=retries, backoff=backoff, timeout=(min(15.0, timeout), timeout),
                        min_free=min_free, progress=not no_progress)
    result = download_files(root, table, base_url or default_url, splits, keep_archives=keep_archives, opts=opts)
    code = result.exit_code()
    if result.fatal:
        click.echo(f"error: {result.fatal}", err=True)
    if code == 0:
        click.echo(f"{what} ready in {root}")
    elif result.failures:
        click.echo(f"{'partial' if code == 3 else 'failed'}: {len(result.failures)} file(s) failed; "
                   f"see {root / 'download-report.json'}", err=True)
    sys.exit(code)


@download_group.command("clotho", context_settings=CONTEXT)
@click.option("--root", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to fill: ROOT/{development,validation,evaluation}/*.wav + ROOT/clotho_*.csv.")
@click.option("--splits", default="development,validation,evaluation", show_default=True,
              help="Comma-separated splits to fetch (the LICENSE comes with any).")
@_fetch_options
def download_clotho_command(root: Path, splits: str, **transfer) -> None:
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
    from audioret.pipeline.download import CLOTHO_FILES, CLOTHO_URL, UsageError, parse_splits

    try:
        split_list = parse_splits(splits)
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    _download(root, split_list, CLOTHO_FILES, CLOTHO_URL, f"clotho: {', '.join(split_list)}", **transfer)


@download_group.command("dcase2022-retrieval", context_settings=CONTEXT)
@click.option("--root", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to fill: ROOT/retrieval_audio/*.wav + ROOT/retrieval_captions.csv (+ metadata CSV).")
@_fetch_options
def download_dcase2022_retrieval_command(root: Path, **transfer) -> None:
    """Download the DCASE 2022 task 6b evaluation set (Zenodo 6590983): audio to rank and the query captions.

    Same guarantees as `download clotho`: resumable, md5-verified (a mismatch is kept as NAME.bad-md5), an
    extracted archive is never extracted again. The files' sizes are not in the built-in table (md5 only).
    Then `audioret predict` writes a submission for it.

    \b
    Example:
      audioret download dcase2022-retrieval --root data/dcase2022
      audioret predict runs/base --audio-dir data/dcase2022/retrieval_audio \\
          --queries data/dcase2022/retrieval_captions.csv --out predictions.csv
    \b
    Exit codes: 0 ok, 1 failure, 2 usage, 3 partial (see ROOT/download-report.json).
    """
    from audioret.pipeline.download import DCASE2022_RETRIEVAL_FILES, DCASE2022_RETRIEVAL_URL

    _download(root, None, DCASE2022_RETRIEVAL_FILES, DCASE2022_RETRIEVAL_URL, "dcase2022-retrieval", **transfer)

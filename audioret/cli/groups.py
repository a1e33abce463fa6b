"""The Click groups every command module attaches to, and the options several commands share.

Exit codes across the CLI: 0 ok, 1 failure, 2 usage (Click's default), 3 partial (some inputs failed; the
failures are listed in a report file named on stderr). Any failure a command does not handle itself becomes one
`error: ...` line and exit 1 (`AudioretGroup`, audioret/cli/errors.py).
"""
from __future__ import annotations

import os

import click

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

def _version() -> str:
    """The installed distribution's version, or the source tree's when run from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("audioret")
    except PackageNotFoundError:
        return "0.1.0+source"


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class AudioretGroup(click.Group):
    """The top-level group: every subcommand runs inside it, so its failures are reported in one line here."""

    def invoke(self, ctx: click.Context):
        from audioret.cli.errors import invoke_reporting_errors

        return invoke_reporting_errors(lambda: super(AudioretGroup, self).invoke(ctx))


def no_verify_option(fn):
    """`--no-verify` for commands that read caches: skip the shards' payload checksums (cache/integrity.py), said
    on stderr. Set through the environment so launched ranks and trial workers skip it too."""
    def skip(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            from audioret.cache.integrity import NO_VERIFY_ENV

            os.environ[NO_VERIFY_ENV] = "1"
            click.echo("warning: --no-verify: shard checksums are not checked; a damaged shard is read as it is",
                       err=True)
        return value

    return click.option("--no-verify", is_flag=True, expose_value=False, callback=skip,
                        help="Do not check the shards' payload checksums on first read (faster start, no safety).")(fn)


@click.group(context_settings=CONTEXT, cls=AudioretGroup)
@click.version_option(version=_version(), prog_name="audioret")
def main() -> None:
    """audioret: language-based audio retrieval (text query → ranked recordings).

    \b
    Example (a typical session):
      audioret download clotho --root data/clotho
      audioret prep audio    --dataset clotho --root data/clotho --cache caches/
      audioret prep captions --dataset clotho --root data/clotho --cache caches/ --translator marian
      audioret train --cache caches/ --name clotho --out runs/base
      audioret eval runs/base
      audioret retrieve runs/base "a dog barks while rain falls"
    """


@main.group("prep", context_settings=CONTEXT)
def prep_group() -> None:
    """Precompute deterministic work once (log-mels, back-translations) into HDF5 shards.

    \b
    Example:
      audioret prep audio --dataset clotho --root data/clotho --cache caches/
    """


@main.group("cache", context_settings=CONTEXT)
def cache_group() -> None:
    """List, verify and clean shard caches.

    \b
    Example:
      audioret cache ls caches/
    """


@main.group("preview", context_settings=CONTEXT)
def preview_group() -> None:
    """Show what training will see (augmented captions or log-mels).

    \b
    Example:
      audioret preview captions --cache caches/ --name clotho -n 5
    """


@main.group("download", context_settings=CONTEXT)
def download_group() -> None:
    """Fetch public datasets into the layout `prep` reads.

    \b
    Example:
      audioret download clotho --root data/clotho
    """


def dataset_root(dataset: str, root, manifest):
    """Validate --dataset and derive the root (a manifest's folder by default); usage errors exit 2."""
    from audioret.pipeline.datasets import DATASET_KINDS

    if dataset not in DATASET_KINDS:
        raise click.BadParameter(f"unknown dataset {dataset!r}; choose from {', '.join(sorted(DATASET_KINDS))}",
                                 param_hint="--dataset")
    if root is None:
        if manifest is None:
            raise click.UsageError("--root is required (or --manifest for --dataset manifest)")
        root = manifest.parent
    return root


def dataset_subsets(dataset: str, text: str | None) -> list[str] | None:
    """--subsets as a list, checked against the dataset's registered subsets (usage error, exit 2)."""
    from audioret.pipeline.datasets import DatasetError, check_subsets, split_list

    subsets = split_list(text)
    try:
        check_subsets(dataset, subsets)
    except DatasetError as exc:
        raise click.BadParameter(str(exc), param_hint="--subsets") from None
    return subsets


def encoding_option(what: str):
    """`--encoding NAME` for commands that read CSVs (`what`: which ones, for the help): checked up front (a usage
    error, exit 2, for an unknown codec), passed on as the codec's canonical name (None: UTF-8)."""
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        from audioret.cache.text_files import check_encoding

        try:
            return check_encoding(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option("--encoding", default=None, metavar="NAME", callback=check,
                        help=f"Text encoding of {what} (default UTF-8, a BOM tolerated), e.g. cp949 for the Korean "
                             "Windows copies of Clotho's CSVs.")


def dataset_options(cache_help: str):
    """The options every `prep` stage takes to find a dataset and its cache (one definition, same spelling)."""
    from pathlib import Path

    options = [
        click.option("--dataset", required=True, metavar="KIND",
                     help="Dataset reader: clotho (Clotho v2.1 layout), manifest (CSV/JSONL), audiocaps, wavcaps, "
                          "folder, or any registered one."),
        click.option("--root", type=click.Path(path_type=Path), default=None,
                     help="Dataset root (Clotho: the folder with clotho_captions_*.csv). Manifest: default its "
                          "folder."),
        click.option("--manifest", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="CSV or JSONL with split, file_name, caption_1..caption_N (file names relative to it)."),
        click.option("--cache", "cache_root", required=True, type=click.Path(path_type=Path, file_okay=False),
                     help=cache_help),
        click.option("--name", default=None, help="Name to find this cache by later (default: the dataset kind)."),
        click.option("--splits", default=None, help="Comma-separated splits to include (default: all present)."),
        click.option("--subsets", default=None, metavar="NAMES",
                     help="Comma-separated parts of a dataset that has them (wavcaps: freesound,bbc,soundbible,"
                          "audioset_sl; default: every part present)."),
        click.option("--exclude", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
                     metavar="FILE", help="Clips to leave out (e.g. the DCASE list of sounds overlapping the "
                                          "evaluation data): names or Freesound ids, one per line, a CSV column "
                                          "(sound_id/file_name/fname/id) or JSON; part of the cache key."),
        encoding_option("the dataset's CSV / JSON files"),
    ]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate

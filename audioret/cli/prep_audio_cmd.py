"""`audioret prep audio`: the command-line face of pipeline.prep_audio (argument checks, output, exit codes)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from audioret.cli.groups import (CONTEXT, EXIT_OK, EXIT_PARTIAL, dataset_options, dataset_root,
                                 dataset_subsets, prep)


def _check_features(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Load the definition up front (an `hf:` extractor too), so a bad value is a usage error before any work."""
    from audioret.pipeline.feature_defs import FeatureSpecError, feature_definition

    try:
        feature_definition(value)
    except FeatureSpecError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@prep.command("audio", context_settings=CONTEXT)
@dataset_options("Cache root; the features land in CACHE/audio/<key>/.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--shard-size", type=click.IntRange(min=1), default=256, show_default=True, help="Clips per shard.")
@click.option("--wait-lock", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait when another prep holds the cache (0: refuse at once).")
@click.option("--content-hash", is_flag=True,
              help="Fingerprint sources by content (sha256) too, not only size and mtime.")
@click.option("--scheduler", default=None, metavar="ADDR",
              help="Dask scheduler, e.g. tcp://head:8786 (workers need this package and the same paths).")
@click.option("--features", "features", default="panns", show_default=True, callback=_check_features,
              metavar="panns|passt|hf:NAME",
              help="Feature definition: the PANNs log-mel (CNN10), the PaSST mel, or a Hugging Face feature "
                   "extractor by hub name or local folder (AST, CLAP).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="tqdm progress bar on stderr.")
def prep_audio_cmd(dataset: str, root: Path | None, manifest: Path | None, cache_root: Path, name: str | None,
                   splits: str | None, subsets: str | None, exclude: Path | None, encoding: str | None,
                   workers: int | None, shard_size: int, wait_lock: float,
                   content_hash: bool, scheduler: str | None, features: str, progress: bool) -> None:
    """Decode every clip once and cache its features as float16 HDF5 shards: by default the 64-bin PANNs log-mel
    (32 kHz, hop 320); `--features passt` the 128-bin PaSST mel; `--features hf:NAME` what a Hugging Face
    feature extractor computes per clip, at its own sampling rate.

    Re-running finishes an interrupted cache (only missing shards are redone) or, when the cache is complete,
    just prints its directory. Files that cannot be decoded are listed in failures.jsonl and on stderr; the
    other clips complete and the exit code is 3. The cache directory is printed on stdout at the end.

    \b
    Examples:
      audioret prep audio --dataset clotho --root data/clotho --cache caches/
      audioret prep audio --dataset manifest --manifest my/clips.csv --cache caches/ --name mine --workers 4
      audioret prep audio --dataset wavcaps --root data --subsets freesound,bbc --cache caches/
      audioret prep audio --dataset clotho --root data/clotho --cache caches/ --features passt
      audioret prep audio --dataset manifest --manifest wavcaps.csv --cache caches/ --exclude excluded_ids.csv
      audioret prep audio --dataset folder --root data/eval_audio --cache caches/   # every audio file, no captions
    """
    from audioret.pipeline.datasets import split_list
    from audioret.pipeline.prep_audio import prep_audio

    root = dataset_root(dataset, root, manifest)
    subset_list = dataset_subsets(dataset, subsets)
    # Failures (DatasetError, a held lock, disk full, ...) become one `error:` line, exit 1, in the group
    # (audioret/cli/errors.py), like every command's.
    result = prep_audio(dataset, root, cache_root, manifest=manifest, name=name, splits=split_list(splits),
                        subsets=subset_list, workers=workers, shard_size=shard_size, wait_lock=wait_lock,
                        content_hash=content_hash, progress=progress, scheduler=scheduler, features=features,
                        exclude=exclude, encoding=encoding)
    if result.excluded:
        click.echo(result.excluded.summary(), err=True)
    if result.noop:
        click.echo(f"cache complete, nothing to do ({result.n_clips} clips)", err=True)
    else:
        click.echo(f"{result.shards_done} shards written, {result.shards_skipped} already present", err=True)
        if result.n_reused:
            click.echo(f"{result.n_decoded} clip(s) decoded, {result.n_reused} unchanged ones copied from an older "
                       "cache", err=True)
    if result.decoder_warnings:
        click.echo(f"{result.decoder_warnings} decoder warning(s) (the `warning: <file>: ...` lines above)", err=True)
    if result.failures:
        if result.noop:  # the failures of the run that made the cache still hold: say so again
            for fail in result.failures:
                click.echo(f"{fail['file']}: {fail['error']}", err=True)
        click.echo(f"{len(result.failures)} file(s) failed; see {result.cache_dir / 'failures.jsonl'}", err=True)
    click.echo(str(result.cache_dir))
    sys.exit(EXIT_PARTIAL if result.failures else EXIT_OK)

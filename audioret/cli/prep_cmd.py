"""`audioret prep audio` and `audioret prep captions`: the command-line face of pipeline.prep_audio and
pipeline.prep_captions (argument checks, output, exit codes)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from audioret.cli.groups import (
    CONTEXT,
    EXIT_OK,
    EXIT_PARTIAL,
    dataset_options,
    dataset_root,
    dataset_subsets,
    prep_group,
)


def _check_features(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Load the definition up front (an `hf:` extractor too), so a bad value is a usage error before any work."""
    from audioret.pipeline.feature_defs import FeatureSpecError, feature_definition

    try:
        feature_definition(value)
    except FeatureSpecError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@prep_group.command("audio", context_settings=CONTEXT)
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
def prep_audio_command(dataset: str, root: Path | None, manifest: Path | None, cache_root: Path, name: str | None,
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
    _echo_audio_summary(result)
    sys.exit(EXIT_PARTIAL if result.failures else EXIT_OK)


def _echo_audio_summary(result) -> None:
    """What `prep audio` did, on stderr, then the cache directory on stdout."""
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


@prep_group.command("captions", context_settings=CONTEXT)
@dataset_options("Cache root; captions land in CACHE/captions/<key>/, translations in CACHE/translations/.")
@click.option("--translator", type=click.Choice(["google", "marian", "none"]), default="none", show_default=True,
              help="Back-translation backend: google (deep-translator, network), marian (opus-mt, offline), none.")
@click.option("--pivots", default="de,fr,es", show_default=True, help="Pivot languages for EN→X→EN.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Texts per marian generate() call.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="marian: where to run the model (auto: GPU when present).")
@click.option("--marian-model-template", default=None, metavar="TEMPLATE",
              help="marian model name/path with {src} and {tgt} [default: Helsinki-NLP/opus-mt-{src}-{tgt}].")
@click.option("--google-url", default=None, envvar="AUDIORET_GOOGLE_URL", metavar="URL",
              help="google: endpoint (default https://translate.google.com/m; a mirror or test server).")
@click.option("--google-rps", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="google: at most this many requests per second (0: unlimited).")
@click.option("--google-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="google: seconds before a request counts as hung and is retried.")
@click.option("--google-retries", type=click.IntRange(min=0), default=6, show_default=True,
              help="google: retries (exponential backoff with jitter) on 429 / 5xx / timeout.")
@click.option("--google-backoff", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="google: first backoff in seconds (doubles per retry, capped at 120 s).")
@click.option("--timeout-total", type=click.FloatRange(min=0.1), default=180.0, show_default=True, metavar="SECONDS",
              help="google: the longest one text may take, every retry and backoff wait included; then the stage "
                   "stops (exit 1), keeping every translation so far.")
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Clips per shard.")
@click.option("--wait-lock", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait when another prep holds the cache (0: refuse at once).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="tqdm progress bar on stderr.")
def prep_captions_command(dataset: str, root: Path | None, manifest: Path | None, cache_root: Path, name: str | None,
                          splits: str | None, subsets: str | None, exclude: Path | None, encoding: str | None,
                          translator: str, pivots: str,
                          batch_size: int, device: str, marian_model_template: str | None, google_url: str | None,
                          google_rps: float, google_timeout: float, google_retries: int, google_backoff: float,
                          timeout_total: float, shard_size: int, wait_lock: float, progress: bool) -> None:
    """Normalise every caption and back-translate it EN→pivot→EN once, into caption shards.

    Every translation is committed to CACHE/translations/ as it arrives: an interrupted or rate-limited run
    resumes without re-translating anything, and other datasets reuse it. A rerun of a finished cache does
    nothing. Texts that could not be translated are listed in failures.jsonl (exit 3; a rerun retries them);
    if the translator is unusable (no network, model missing, no answer within --timeout-total) the run stops
    with exit 1 and keeps its work. Each google retry is one line on stderr (`retry 2/6 in 4.0 s: <reason>`).
    Captions that normalise to nothing ("!!!") are dropped with a warning and listed in failures.jsonl.
    The cache directory is printed on stdout.

    \b
    Examples:
      audioret prep captions --dataset clotho --root data/clotho --cache caches/ --translator marian
      audioret prep captions --dataset clotho --root data/clotho --cache caches/ --translator google --pivots de,fr
      audioret prep captions --dataset manifest --manifest my/clips.csv --cache caches/ --translator none
    """
    from audioret.pipeline.datasets import split_list
    from audioret.pipeline.prep_captions import prep_captions

    root = dataset_root(dataset, root, manifest)
    subset_list = dataset_subsets(dataset, subsets)
    pivot_list = _pivot_list(translator, pivots)
    google = {"base_url": google_url, "rps": google_rps, "timeout": google_timeout, "retries": google_retries,
              "backoff": google_backoff, "timeout_total": timeout_total}
    # Failures (DatasetError, a held lock, an unavailable translator, disk full, ...) become one `error:` line,
    # exit 1, in the group (audioret/cli/errors.py), like every command's.
    result = prep_captions(dataset, root, cache_root, manifest=manifest, name=name, splits=split_list(splits),
                           subsets=subset_list, translator=translator, pivots=pivot_list, batch_size=batch_size,
                           device=device, marian_template=marian_model_template, google=google,
                           shard_size=shard_size, wait_lock=wait_lock, progress=progress, exclude=exclude,
                           encoding=encoding)
    _echo_captions_summary(result, translator)
    sys.exit(EXIT_PARTIAL if result.failures or result.problems else EXIT_OK)


def _pivot_list(translator: str, pivots: str) -> list[str]:
    """--pivots as a list of languages (comma or space separated); a list no translation can use is a usage error."""
    pivot_list = [p for p in pivots.replace(" ", ",").split(",") if p]
    if translator != "none" and not pivot_list:
        raise click.BadParameter("give at least one pivot language, e.g. de,fr,es", param_hint="--pivots")
    if "en" in pivot_list:
        raise click.BadParameter("a pivot must differ from the source language en", param_hint="--pivots")
    return pivot_list


def _echo_captions_summary(result, translator: str) -> None:
    """What `prep captions` did, on stderr (drops, skipped rows, failed translations), then the cache directory."""
    if result.excluded:
        click.echo(result.excluded.summary(), err=True)
    if translator == "none":
        click.echo("translator none: no back-translations; training will treat p_bt as 0", err=True)
    for drop in result.dropped:
        click.echo(f"warning: {drop['file']}: {drop['error']}", err=True)
    if result.dropped:
        click.echo(f"{len(result.dropped)} caption(s) dropped (empty after normalisation); see "
                   f"{result.cache_dir / 'failures.jsonl'}", err=True)
    skipped = [p for p in result.problems if p not in result.dropped]
    if skipped:
        click.echo(f"{len(skipped)} dataset row(s) skipped (e.g. {skipped[0]['file']}: "
                   f"{skipped[0]['error']}); see {result.cache_dir / 'failures.jsonl'}", err=True)
    if result.noop:
        click.echo(f"captions cache complete, nothing to do ({result.n_clips} clips, {result.n_captions} captions)",
                   err=True)
    else:
        click.echo(f"{result.shards_done} shard(s) written; {result.n_clips} clips, {result.n_captions} captions, "
                   f"{result.n_requested} texts sent to the translator", err=True)
    if result.failures:
        click.echo(f"{len(result.failures)} back-translation(s) failed; see "
                   f"{result.cache_dir / 'failures.jsonl'} (rerun to retry them)", err=True)
    click.echo(str(result.cache_dir))

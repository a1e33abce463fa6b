"""`audioret prep captions` and `audioret preview captions`: the command-line face of pipeline.prep_captions
and of the trainer's text augmentation (so a person sees exactly what training will see)."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import click

from audioret.cli.groups import (CONTEXT, EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, dataset_options, dataset_root,
                                 dataset_subsets, no_verify_option, prep, preview)

# The paper's best text-augmentation setting (Table 4); `--set` overrides any of them.
PAPER_BEST = {"p_eda": 0.9936, "p_syn": 0.2962, "p_swp": 0.0085, "p_del": 0.1944, "p_ins": 0.0, "p_bt": 0.1812}


@prep.command("captions", context_settings=CONTEXT)
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
def prep_captions_cmd(dataset: str, root: Path | None, manifest: Path | None, cache_root: Path, name: str | None,
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
    pivot_list = [p for p in pivots.replace(" ", ",").split(",") if p]
    if translator != "none" and not pivot_list:
        raise click.BadParameter("give at least one pivot language, e.g. de,fr,es", param_hint="--pivots")
    if "en" in pivot_list:
        raise click.BadParameter("a pivot must differ from the source language en", param_hint="--pivots")
    google = {"base_url": google_url, "rps": google_rps, "timeout": google_timeout, "retries": google_retries,
              "backoff": google_backoff, "timeout_total": timeout_total}
    # Failures (DatasetError, a held lock, an unavailable translator, disk full, ...) become one `error:` line,
    # exit 1, in the group (audioret/cli/errors.py), like every command's.
    result = prep_captions(dataset, root, cache_root, manifest=manifest, name=name, splits=split_list(splits),
                           subsets=subset_list, translator=translator, pivots=pivot_list, batch_size=batch_size,
                           device=device, marian_template=marian_model_template, google=google,
                           shard_size=shard_size, wait_lock=wait_lock, progress=progress, exclude=exclude,
                           encoding=encoding)
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
    sys.exit(EXIT_PARTIAL if result.failures or result.problems else EXIT_OK)


def parse_sets(items: tuple[str, ...], base: dict[str, float] | None = None,
               style: str = "audioret") -> tuple[dict[str, float], str]:
    """(text-augmentation probabilities, text_normalisation): `base` (default PAPER_BEST) and `style` with the
    `k=v` overrides applied; unknown keys, values outside [0, 1] or an unknown normalisation are usage errors."""
    from audioret.trainer.caption_text import TEXT_NORMALISATIONS

    out = dict(base or PAPER_BEST)
    for item in items:
        k, sep, v = item.partition("=")
        k = k.strip().lower()
        if sep and k == "text_normalisation":
            style = v.strip()
            if style not in TEXT_NORMALISATIONS:
                raise click.BadParameter(f"{item!r}: text_normalisation is one of {', '.join(TEXT_NORMALISATIONS)}",
                                         param_hint="--set")
            continue
        if not sep or k not in PAPER_BEST:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE with KEY in {', '.join(PAPER_BEST)} or "
                                     "text_normalisation", param_hint="--set")
        try:
            out[k] = float(v)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {v!r} is not a number", param_hint="--set") from None
        if not 0.0 <= out[k] <= 1.0:
            raise click.BadParameter(f"{item!r}: probabilities lie in [0, 1]", param_hint="--set")
    return out, style


def config_text_settings(config_file: Path | None) -> tuple[dict[str, float] | None, str]:
    """The text-augmentation probabilities and text_normalisation of a training config file (None, "audioret":
    no file); a bad file is a usage error naming it."""
    if config_file is None:
        return None, "audioret"
    from audioret.trainer.config import ConfigError, load_config

    try:
        cfg = load_config(config_file)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    return {k: float(getattr(cfg, k)) for k in PAPER_BEST}, cfg.text_normalisation


@preview.command("captions", context_settings=CONTEXT)
@no_verify_option
@click.option("--cache", "cache_root", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Cache root holding captions/<key>/.")
@click.option("--name", default=None, help="Captions cache name (default: newest complete one).")
@click.option("--key", default=None, help="Captions cache key prefix (instead of --name).")
@click.option("-n", "n_clips", type=click.IntRange(min=1), default=5, show_default=True, help="Clips to show.")
@click.option("--draws", type=click.IntRange(min=0), default=3, show_default=True,
              help="Augmented draws per caption.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A training config (configs/*.toml, RUN_DIR/config.toml): show the caption form its "
                   "text_normalisation trains on, with its text-augmentation probabilities.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override p_eda, p_syn, p_swp, p_del, p_ins, p_bt or text_normalisation (default: the "
                   "--config file's, else the paper's best setting and audioret).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the clip choice and the draws.")
def preview_captions_cmd(cache_root: Path, name: str | None, key: str | None, n_clips: int, draws: int,
                         config_file: Path | None, sets: tuple[str, ...], seed: int) -> None:
    """Print clips with their raw captions, the form the model trains on, back-translations and augmented draws.

    The form is the one the config's text_normalisation gives (`norm:` the cache's normalised caption for
    audioret, `dcase2025:` the DCASE 2025 baseline's for dcase2025). The draws come from the trainer's own
    TextAugmenter (back-translation with p_bt, then EDA) on that form, with the insertion vocabulary of the
    training captions, so what you see is what training sees.

    \b
    Examples:
      audioret preview captions --cache caches/ --name clotho -n 3
      audioret preview captions --cache caches/ --set p_eda=1 --set p_syn=0.5 --seed 7
      audioret preview captions --cache caches/ --name clotho --config configs/dcase2025_baseline.toml
    """
    from audioret.cache.caption_shards import CaptionCache
    from audioret.cache.manifest import CacheNotFoundError
    from audioret.trainer.caption_text import caption_view
    from audioret.trainer.eda import EDA, TextAugmenter, vocabulary_of
    from audioret.trainer.wordnet import WordNetMissingError

    p, style = parse_sets(sets, *config_text_settings(config_file))
    try:
        cc = CaptionCache.open(cache_root, name=name, key=key)
    except (CacheNotFoundError, OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    seen = caption_view(cc, style)  # what the text encoder trains on (trainer/caption_text.py)
    train_ids = cc.ids_for_split("development") or cc.ids_for_split("train") or cc.clip_ids
    vocab = vocabulary_of(c for cid in train_ids for c in seen.captions(cid))
    try:
        eda = EDA(vocab, p["p_eda"], p["p_syn"], p["p_swp"], p["p_del"], p["p_ins"], seed=seed)
    except WordNetMissingError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    rng = random.Random(seed)
    aug = TextAugmenter(seen, p["p_bt"] if cc.backend != "none" else 0.0, eda)
    settings = " ".join(f"{k}={v:g}" for k, v in p.items())
    click.echo(f"# {cc.directory}  backend={cc.backend} pivots={','.join(cc.pivots) or '-'}  "
               f"text_normalisation={style}  {settings}")
    label = "norm:" if style == "audioret" else f"{style}:"
    for cid in sorted(rng.sample(cc.clip_ids, min(n_clips, len(cc.clip_ids)))):
        click.echo(f"\n{cid}  [{cc.splits[cc.index_of(cid)]}]")
        bts = cc.back_translations(cid)
        for i, (raw, cap) in enumerate(zip(cc.raw(cid), seen.captions(cid))):
            click.echo(f"  {i + 1}. raw:  {raw}")
            click.echo(f"     {label} {cap}")
            for pivot in cc.pivots:
                click.echo(f"     bt {pivot}: {bts[pivot][i]}")
            for _ in range(draws):
                click.echo(f"     aug:  {aug.pick(cid, i, rng)}")

"""`audioret preview audio` and `audioret preview captions`: what training will see, from the trainer's own
augmentation (trainer/preview.py), shown to a person."""
from __future__ import annotations

from pathlib import Path

import click

from audioret.cli.errors import fail, one_line_warnings
from audioret.cli.groups import CONTEXT, EXIT_USAGE, no_verify_option, preview_group

# The paper's best text-augmentation setting (Table 4); `--set` overrides any of them.
PAPER_BEST = {"p_eda": 0.9936, "p_syn": 0.2962, "p_swp": 0.0085, "p_del": 0.1944, "p_ins": 0.0, "p_bt": 0.1812}


@preview_group.command("audio", context_settings=CONTEXT)
@no_verify_option
@click.option("--cache", "cache_root", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--name", default=None, help="Dataset name given at `prep audio`.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Config override (repeatable).")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="PNG file to write.")
@click.option("-n", "n_clips", type=click.IntRange(1, 16), default=4, show_default=True, help="Clips to show.")
@click.option("--split", default="train", show_default=True)
@click.option("--seed", type=int, default=None, help="Seed (default: the config's).")
def preview_audio_command(cache_root: Path, name: str | None, overrides: tuple[str, ...], config_file: Path | None,
                          out_file: Path, n_clips: int, split: str, seed: int | None) -> None:
    """Plot a few clips' log-mels before and after the augmentation chain (crop → gain → Freq-MixStyle →
    SpecAugment), side by side.

    \b
    Example:
      audioret preview audio --cache caches/ --name clotho --set g_max=6 --set n_t=8 --out aug.png
    """
    from audioret.trainer.config import ConfigError, load_config
    from audioret.trainer.preview import render_audio_preview

    one_line_warnings()
    try:
        cfg = load_config(config_file, list(overrides))
        path = render_audio_preview(cfg, cache_root, name, out_file, n_clips, split, seed)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    click.echo(f"wrote {path}")


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


@preview_group.command("captions", context_settings=CONTEXT)
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
def preview_captions_command(cache_root: Path, name: str | None, key: str | None, n_clips: int, draws: int,
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
    from audioret.cache.manifest import CacheNotFoundError
    from audioret.trainer.preview import caption_preview
    from audioret.trainer.wordnet import WordNetMissingError

    p, style = parse_sets(sets, *config_text_settings(config_file))
    try:
        shown = caption_preview(cache_root, name, key, n_clips, draws, p, style, seed)
    except (CacheNotFoundError, OSError, ValueError, WordNetMissingError) as exc:
        fail(str(exc))
    settings = " ".join(f"{k}={v:g}" for k, v in p.items())
    click.echo(f"# {shown.directory}  backend={shown.backend} pivots={','.join(shown.pivots) or '-'}  "
               f"text_normalisation={style}  {settings}")
    label = "norm:" if style == "audioret" else f"{style}:"
    for cid, split, captions in shown.clips:
        click.echo(f"\n{cid}  [{split}]")
        for i, caption in enumerate(captions):
            click.echo(f"  {i + 1}. raw:  {caption.raw}")
            click.echo(f"     {label} {caption.trained_form}")
            for pivot in shown.pivots:
                click.echo(f"     bt {pivot}: {caption.back_translations[pivot]}")
            for draw in caption.draws:
                click.echo(f"     aug:  {draw}")

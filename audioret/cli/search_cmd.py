"""`audioret search` (scikit-optimize over training hyperparameters) and `audioret sweep` (variant × seed tables).

Both are resumable: re-run the same command after a crash or kill. Exit codes: 0 everything finished, 1 nothing
finished or an unexpected failure, 2 usage (bad option, space, config, or a SEARCH_DIR of another search),
3 partial (some trials/runs failed; the report file is named on stderr).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from audioret.cli.groups import CONTEXT, EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main, no_verify_option


def _gpus(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected GPU indices like 0,1,2", param_hint="--gpus") from None


def _custom_objective(spec: str) -> Any:
    """'module:attr' → the callable (a class is instantiated without arguments)."""
    mod, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise click.BadParameter(f"{spec!r}: cannot import ({exc})", param_hint="--objective") from None
    return obj() if isinstance(obj, type) else obj


def _objective(cache: Path | None, name: str | None, config: Path | None, overrides: tuple[str, ...],
               audio_key: str | None, caption_key: str | None, custom: str | None,
               evaluate: str | None = None) -> tuple[Any, str]:
    """The objective and the identity string the journal checks on resume."""
    if custom:
        return _custom_objective(custom), f"custom {custom}"
    if cache is None:
        raise click.UsageError("--cache is required (unless --objective is given)")
    from audioret.trainer.search.trials import train_objective

    return train_objective(cache, name, config, overrides, audio_key, caption_key, evaluate)


def _finish(n_failed: int, n_finished: int, report: Path) -> None:
    if n_failed:
        click.echo(f"{n_failed} failed; see {report}", err=True)
        sys.exit(EXIT_FAILURE if n_finished == 0 else EXIT_PARTIAL)
    sys.exit(EXIT_OK)


COMMON = [
    click.option("--cache", "cache", type=click.Path(path_type=Path, file_okay=False), default=None,
                 help="Cache root holding the audio and caption shards (required unless --objective)."),
    click.option("--name", default=None, help="Cache name given to `prep` (newest complete cache of that name)."),
    click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False), required=True,
                 help="Output dir; re-running with the same --out resumes."),
    click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                 help="Fixed config overrides for every run (repeatable), e.g. --set epochs=20."),
    click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Runs in parallel (local processes, or in-flight tasks with --scheduler)."),
    click.option("--gpus", default=None, help="Local GPUs, one run per GPU, e.g. 0,1,2,3 (sets --workers)."),
    click.option("--scheduler", default=None, metavar="ADDR",
                 help="Dask scheduler, e.g. tcp://10.0.0.5:8786; workers need this checkout and the paths."),
    click.option("--audio-key", default=None, help="Pin the audio cache by key instead of newest by name."),
    click.option("--caption-key", default=None, help="Pin the caption cache by key."),
    click.option("--objective", "custom", default=None, metavar="MODULE:ATTR",
                 help="Use a picklable objective(params, trial_dir) -> dict instead of training (tests, research)."),
]


def _common(fn: Any) -> Any:
    for opt in reversed(COMMON):
        fn = opt(fn)
    return no_verify_option(fn)


@main.command("search", context_settings=CONTEXT)
@_common
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Base config TOML.")
@click.option("--space", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Search space TOML (default: the paper's Table 4, 13 dimensions).")
@click.option("--trials", type=click.IntRange(min=1), default=110, show_default=True,
              help="Trials that end (finished or failed); the paper ran 110.")
@click.option("--initial", type=click.IntRange(min=1), default=10, show_default=True, help="Random starts.")
@click.option("--estimator", type=click.Choice(["GP", "RF", "ET"]), default="GP", show_default=True,
              help="Surrogate model (GBRT is broken on current scikit-learn and not offered).")
@click.option("--acq", type=click.Choice(["gp_hedge", "EI", "PI", "LCB"]), default="gp_hedge", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--keep-best", type=click.IntRange(min=0), default=3, show_default=True,
              help="Finished trials that keep their weights (the best K); the others keep config and metrics.")
def search_command(cache: Path | None, name: str | None, out: Path, overrides: tuple[str, ...], workers: int,
               gpus: str | None, scheduler: str | None, audio_key: str | None, caption_key: str | None,
               custom: str | None, config: Path | None, space: Path | None, trials: int, initial: int,
               estimator: str, acq: str, seed: int, keep_best: int) -> None:
    """Tune training hyperparameters with scikit-optimize; every trial is a run dir OUT/trials/NNN/.

    \b
    Writes OUT/trials.jsonl (journal), OUT/best.toml, OUT/report.md, OUT/convergence.png, OUT/objective.png.
    Kill it at any time; the same command resumes (finished trials are kept, running ones are resumed).
    \b
    Examples:
      audioret search --cache caches/ --name clotho --out searches/s1 --config base.toml --trials 110 --gpus 0,1,2,3
      audioret search --cache caches/ --name clotho --out searches/s1 --scheduler tcp://head:8786 --workers 8
      audioret train --cache caches/ --name clotho --out runs/best --config searches/s1/best.toml
    """
    from audioret.trainer.config import ConfigError
    from audioret.trainer.search.smbo import SearchError, run_search
    from audioret.trainer.search.space import SpaceError, check_against_config, load_space

    try:
        dims = load_space(space)
        objective, ident = _objective(cache, name, config, overrides, audio_key, caption_key, custom)
        if not custom:
            check_against_config(dims, config, overrides)
        journal = run_search(objective, out, trials, space=dims, initial=initial, estimator=estimator, acq=acq,
                             seed=seed, workers=workers, scheduler=scheduler, gpus=_gpus(gpus),
                             objective_id=ident, base_config=config,
                             overrides=overrides, keep_best=keep_best)
    except (SpaceError, SearchError, ConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except RuntimeError as exc:  # e.g. an unreachable Dask scheduler
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    _finish(len(journal.by_status("failed")), len(journal.by_status("finished")), out / "report.md")


@main.command("sweep", context_settings=CONTEXT)
@_common
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Base config TOML.")
@click.option("--variant", "variants", multiple=True, required=True, metavar="NAME:KEY=V,KEY=V",
              help="A table row: a name and its config changes (repeatable); 'baseline' alone = no change.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds 0..N-1 per variant.")
@click.option("--split", default="evaluation", show_default=True, help="Split every run is evaluated on.")
def sweep_command(cache: Path | None, name: str | None, out: Path, overrides: tuple[str, ...], workers: int,
              gpus: str | None, scheduler: str | None, audio_key: str | None, caption_key: str | None,
              custom: str | None, config: Path | None, variants: tuple[str, ...], seeds: int, split: str) -> None:
    """Run every variant × seed, evaluate each, and write OUT/table.md + OUT/table.csv (mean ± std over seeds).

    \b
    Example (the paper's Table 5 ablations):
      audioret sweep --cache caches/ --name clotho --out sweeps/t5 --config base.toml --seeds 3 --gpus 0,1 \\
        --variant full --variant no_audio_aug:n_t=0,n_f=0,g_max=0,p_ms=0 --variant no_gain:g_max=0 \\
        --variant no_mixstyle:p_ms=0 --variant no_specaugment:n_t=0,n_f=0 --variant no_bt:p_bt=0 \\
        --variant no_eda:p_eda=0 --variant no_text_aug:p_bt=0,p_eda=0
    """
    from audioret.trainer.config import ConfigError
    from audioret.trainer.search.sweep import SweepError, check_variants, parse_variant, run_sweep

    try:
        parsed = [parse_variant(v) for v in variants]
        objective, ident = _objective(cache, name, config, overrides, audio_key, caption_key, custom, split)
        if not custom:
            check_variants(parsed, config, overrides)
        rows = run_sweep(objective, out, parsed, seeds=seeds, workers=workers, scheduler=scheduler,
                            gpus=_gpus(gpus), objective_id=ident)
    except (SweepError, ConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except RuntimeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    _finish(sum(r["failed"] for r in rows), sum(r["n"] for r in rows), out / "table.md")

"""`audioret report`: the command-line face of trainer.report (a static HTML page of a run's retrieval).

Other failures become one `error: ...` line through the group (audioret/cli/errors.py)."""
from __future__ import annotations

from pathlib import Path

import click

from audioret.cli.errors import fail
from audioret.cli.groups import CONTEXT, EXIT_USAGE, main, no_verify_option


@main.command("report", context_settings=CONTEXT)
@no_verify_option
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--split", default="evaluation", show_default=True, help="Split to score (aliases: test, val, ...).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--device", default=None, help="Override the run's device (cpu, cuda, ...).")
@click.option("--copy-audio", is_flag=True,
              help="Copy the linked recordings into RUN_DIR/report/audio/ so the folder plays anywhere.")
@click.option("--audio-root", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="Dataset root to find the recordings under, when it moved since `prep audio`.")
@click.option("--worst", "n_worst", type=click.IntRange(min=0), default=20, show_default=True,
              help="How many of the worst queries to show.")
@click.option("--best", "n_best", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the best queries to show.")
def report_command(run_dir: Path, split: str, checkpoint: str, device: str | None, copy_audio: bool,
                   audio_root: Path | None, n_worst: int, n_best: int) -> None:
    """Write RUN_DIR/report/index.html: metrics, training curves, the rank histogram, and the worst and best
    queries with their top-5 clips to listen to (static; open it from disk in a browser).

    \b
    Examples:
      audioret report runs/base
      audioret report runs/base --split validation --copy-audio
      audioret report runs/base --audio-root /mnt/data/clotho     # the dataset moved since prep
    """
    from audioret.trainer.config import ConfigError
    from audioret.trainer.evaluate import LoadedRun
    from audioret.trainer.report import build_report

    try:
        run = LoadedRun(run_dir, checkpoint, device)
        result = build_report(run, split, copy_audio=copy_audio, audio_root=audio_root, n_worst=n_worst,
                              n_best=n_best)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if result.missing:
        click.echo(f"warning: {len(result.missing)} of {result.linked + len(result.missing)} clips shown have no "
                   f"source recording (e.g. {result.missing[0]}); their log-mel is shown instead", err=True)
    copied = f", {result.copied} recordings copied" if copy_audio else ""
    click.echo(f"{result.linked} clips linked to their recordings{copied}")
    click.echo(f"report: {result.index}")

"""`audioret train`: the command-line face of the trainer's loop (trainer/loop.py); `--nproc N` starts N ranks of
this same command (audioret/cli/launch.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from audioret.cli.errors import fail, one_line_warnings
from audioret.cli.groups import CONTEXT, EXIT_USAGE, main, no_verify_option


def _check_extras(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """Each --extra checked as itself, so a bad one is blamed on --extra (it travels on as the `extra` key)."""
    from audioret.trainer.config import parse_extra

    for item in value:
        try:
            parse_extra(item)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


@main.command("train", context_settings=CONTEXT)
@no_verify_option
@click.option("--cache", "cache_root", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Cache root holding audio/ and captions/ caches (from `prep audio` / `prep captions`).")
@click.option("--name", default=None, help="Dataset name given at prep (default: the newest caches of any name); "
                                            "validation and early stopping use its validation split.")
@click.option("--extra", "extras", multiple=True, metavar="NAME[:WEIGHT]", callback=_check_extras,
              help="Also train on the train split of the caches named NAME under --cache (repeatable; config key "
                   "`extra`). WEIGHT w: round(w·n) of its n captions per epoch (default 1: each once; "
                   "0 < w ≤ 100).")
@click.option("--out", "run_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Run directory: config.toml, metrics.csv, checkpoints/{last,best}.pt.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="TOML file of config keys (flat), e.g. configs/dcase2025_baseline.toml. With --resume, "
                   "default: RUN_DIR/config.toml.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override one config key (repeatable).")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from checkpoints/last.pt.")
@click.option("--audio-key", default=None, help="Pin the audio cache by key (prefix) instead of the newest.")
@click.option("--caption-key", default=None, help="Pin the captions cache by key (prefix) instead of the newest.")
@click.option("--init-from", "init_from", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="Start from another run's best weights (recorded in config.toml as init_from).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="GPUs/processes on this machine (torch elastic launcher); batch_size is per process.")
@click.option("--nnodes", default="1", show_default=True, help="Nodes for multi-node runs (torchrun semantics).")
@click.option("--rdzv-endpoint", default="", help="HOST:PORT rendezvous for multi-node runs.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="tqdm bars and epoch lines on stderr.")
@click.option("--wait-lock", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait when another train holds RUN_DIR (0: refuse at once).")
def train_command(cache_root: Path, name: str | None, extras: tuple[str, ...], run_dir: Path,
                  config_file: Path | None, overrides: tuple[str, ...], resume: bool, audio_key: str | None,
                  caption_key: str | None, init_from: Path | None, nproc: int, nnodes: str, rdzv_endpoint: str,
                  progress: bool, wait_lock: float) -> None:
    """Train the audio–text bi-encoder on cached features; the best checkpoint by validation mAP@10 is kept.

    \b
    Recipes (--config, in the repository's and the Docker image's configs/ folder):
      configs/paper2022.toml            CNN10 + BERT with the 2022 paper's augmentations (the defaults)
      configs/dcase2025_baseline.toml   PaSST + RoBERTa-large, AdamW, warm-up + cosine (DCASE 2025 baseline)

    \b
    Examples:
      audioret train --cache caches/ --name clotho --out runs/base
      audioret train --cache caches/ --name clotho --out runs/p22 --config configs/paper2022.toml \\
          --set audio_checkpoint=Cnn10_mAP=0.380.pth
      audioret train --cache caches/ --name clotho --out runs/small --set audio_width=0.5 --set epochs=20
      audioret train --cache caches/ --name clotho --out runs/base --resume --wait-lock 600
      audioret train --cache caches/ --name clotho --out runs/ddp --nproc 4        # 4 GPUs, global batch 4 × 30
      audioret train --cache caches/ --name clotho --out runs/ft --init-from runs/audiocaps --set lr=2e-6
      audioret train --cache caches/ --name clotho --extra audiocaps --extra wavcaps:0.5 --out runs/all
    """
    from audioret.trainer import distributed
    from audioret.trainer.config import ConfigError, load_config
    from audioret.trainer.loop import RunExistsError, train

    if nproc > 1 and not distributed.launched_distributed():
        from audioret.cli.launch import run_as_ranks

        sys.exit(run_as_ranks(nproc, run_dir, wait_lock, nnodes, rdzv_endpoint))
    if init_from is not None:
        overrides = (*overrides, f"init_from={init_from.resolve()}")
    if extras:
        overrides = (*overrides, f"extra={','.join(extras)}")

    one_line_warnings()
    if resume and config_file is None and (run_dir / "config.toml").exists():
        config_file = run_dir / "config.toml"
    try:
        cfg = load_config(config_file, list(overrides))
        summary = train(cfg, cache_root, name, run_dir, resume=resume, audio_key=audio_key, caption_key=caption_key,
                        progress=progress, wait_lock=wait_lock)
        distributed.cleanup()
    except (ConfigError, RunExistsError) as exc:
        fail(str(exc), EXIT_USAGE)
    click.echo(f"best validation mAP@10 {summary['best_map10']:.4f} at epoch {summary['best_epoch']} "
               f"({summary['epochs_run']} epochs); run in {summary['run_dir']}")

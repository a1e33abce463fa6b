"""`audioret eval`: score a trained run, or a pretrained CLAP zero-shot, on a split of its cache (trainer/evaluate.py,
trainer/zero_shot.py); prints the metrics table, the reports land beside the run or in --out."""
from __future__ import annotations

from pathlib import Path

import click

from audioret.cli.errors import fail, one_line_warnings
from audioret.cli.groups import CONTEXT, EXIT_USAGE, encoding_option, main, no_verify_option


@main.command("eval", context_settings=CONTEXT)
@no_verify_option
@click.argument("run_dir", required=False, type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--split", default="evaluation", show_default=True, help="Split to score (aliases: test, val, ...).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default=None,
              help="Which checkpoint of RUN_DIR to score.  [default: best]")
@click.option("--device", default=None, help="Override the run's device (cpu, cuda, ...); zero-shot: default auto.")
@click.option("--relevance", "relevance_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="Relevant clips per query (DCASE 2025 `query,audio_filenames` or long "
                                 "`query,file_name[,score]`); default: each caption's own clip (DCASE 2022).")
@encoding_option("the --relevance file")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write eval-SPLIT.json and submission-SPLIT.csv here instead of RUN_DIR (e.g. read-only runs).")
@click.option("--zero-shot", "zero_shot", metavar="CLAP", default=None,
              help="Score this pretrained CLAP (hub name or folder) instead of a run: both of its towers as they "
                   "are, on a cache prepped with `--features hf:CLAP`. Needs --cache and --out.")
@click.option("--cache", "cache_root", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="--zero-shot: cache root holding the audio and caption caches.")
@click.option("--name", default=None, help="--zero-shot: dataset name given at prep (default: the newest caches).")
def eval_command(run_dir: Path | None, split: str, checkpoint: str | None, device: str | None,
                 relevance_file: Path | None, encoding: str | None, out_dir: Path | None, zero_shot: str | None,
                 cache_root: Path | None, name: str | None) -> None:
    """Score a run, or a pretrained CLAP (--zero-shot): text-to-audio mAP@10, mAP@16, R@1/5/10 and audio-to-text
    mAP@10, R@1/5/10; writes eval-SPLIT.json and the DCASE submission-SPLIT.csv (captions verbatim) into RUN_DIR
    or --out.

    \b
    Examples:
      audioret eval runs/base --split evaluation --checkpoint best
      audioret eval runs/base --relevance metadata_eval.csv      # DCASE 2025: several relevant clips per query
      audioret eval /shared/runs/base --out my_reports/           # run directory is read-only
      audioret prep audio --dataset clotho --root data/clotho --cache caches/ --name clotho \\
          --features hf:laion/clap-htsat-fused
      audioret eval --zero-shot laion/clap-htsat-fused --cache caches/ --name clotho --out reports/clap
    """
    from audioret.trainer.config import ConfigError
    from audioret.trainer.relevance import read_relevance

    _check_what_to_score(run_dir, checkpoint, zero_shot, cache_root, name, out_dir)
    checkpoint = checkpoint or "best"
    one_line_warnings()
    try:
        relevance = read_relevance(relevance_file, encoding) if relevance_file is not None else None
        if zero_shot is not None:
            from audioret.trainer.zero_shot import evaluate_zero_shot

            r = evaluate_zero_shot(zero_shot, cache_root, name, out_dir, split, device or "auto", relevance)
            scored = [f"zero-shot {r['model']}", r["split"]]
        else:
            from audioret.trainer.evaluate import evaluate_run

            r = evaluate_run(run_dir, split, checkpoint, device, relevance, out_dir)
            scored = [str(run_dir), r["split"], f"{checkpoint} checkpoint (epoch {r['epoch']})"]
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    _echo_scores(r, scored, split, out_dir if out_dir is not None else run_dir)


def _check_what_to_score(run_dir: Path | None, checkpoint: str | None, zero_shot: str | None,
                         cache_root: Path | None, name: str | None, out_dir: Path | None) -> None:
    """A run (RUN_DIR, optionally --checkpoint) or a pretrained CLAP (--zero-shot with --cache and --out), never
    a mix: usage errors (exit 2) that say what to drop or give."""
    if zero_shot is None and run_dir is None:
        raise click.UsageError("give RUN_DIR, or --zero-shot CLAP with --cache and --out")
    if zero_shot is not None:
        given = [f for f, v in (("RUN_DIR", run_dir), ("--checkpoint", checkpoint)) if v is not None]
        missing = [f for f, v in (("--cache", cache_root), ("--out", out_dir)) if v is None]
        if given or missing:
            raise click.UsageError("--zero-shot scores a pretrained model, not a run: "
                                   + "; ".join(([f"drop {', '.join(given)}"] if given else [])
                                               + ([f"give {', '.join(missing)}"] if missing else [])))
    elif cache_root is not None or name is not None:
        raise click.UsageError("--cache and --name go with --zero-shot; a run knows its caches")


def _echo_scores(r: dict, scored: list[str], split: str, where: Path) -> None:
    """The metrics table of `eval`, the relevance file's unmatched queries/files on stderr, and what was written."""
    rel = r["relevance"]
    click.echo(" · ".join([*scored, f"relevance: {rel if isinstance(rel, str) else rel['file']}"]))
    click.echo(f"{'':14}{'queries':>8} {'items':>6} {'mAP@10':>7} {'mAP@16':>7} {'R@1':>7} {'R@5':>7} {'R@10':>7}"
               f" {'chance mAP@10':>14} {'chance mAP@16':>14}")
    click.echo(f"{'text→audio':14}{r['n_queries']:>8} {r['n_clips']:>6} {r['map10']:>7.4f} {r['map16']:>7.4f} "
               f"{r['r1']:>7.4f} {r['r5']:>7.4f} {r['r10']:>7.4f} {r['chance_map10']:>14.4f} "
               f"{r['chance_map16']:>14.4f}")
    click.echo(f"{'audio→text':14}{r['n_clips']:>8} {r['n_captions']:>6} {r['a2t_map10']:>7.4f} {'':>7} "
               f"{r['a2t_r1']:>7.4f} {r['a2t_r5']:>7.4f} {r['a2t_r10']:>7.4f}")
    if not isinstance(rel, str):
        for what, entry in rel.items():
            if isinstance(entry, dict) and entry["count"]:
                click.echo(f"warning: {rel['file']}: {entry['count']} {what.replace('_', ' ')} "
                           f"(e.g. {entry['first'][0]!r}); listed in eval-{split}.json", err=True)
    click.echo(f"wrote {where / f'eval-{split}.json'} and {where / f'submission-{split}.csv'}")

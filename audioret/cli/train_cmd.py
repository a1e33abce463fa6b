"""`audioret train`, `eval`, `retrieve` and `preview audio`: the command-line face of the trainer.

`retrieve --audio-dir` reads the folder through `prep audio`'s keyed cache (pipeline/folder.py, shared with
`predict`): the trainer never decodes audio, new files get exactly the features `prep audio` caches, and a second
query over the same folder decodes nothing. Queries are normalised as training captions were and handed to the
model in the form its run was trained on (`LoadedRun.query_texts`).
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from audioret.cli.groups import (CONTEXT, EXIT_FAILURE, EXIT_PARTIAL, EXIT_USAGE, encoding_option, main,
                                 no_verify_option, preview)
from audioret.cli.predict_cmd import batch_size_option, folder_cache_option


def _fail(msg: str, code: int = EXIT_FAILURE) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


def _one_line_warnings() -> None:
    """Warnings (e.g. "p_bt treated as 0") as one `warning: ...` line on stderr, without a source-code echo."""
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"


@main.command("train", context_settings=CONTEXT)
@no_verify_option
@click.option("--cache", "cache_root", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Cache root holding audio/ and captions/ caches (from `prep audio` / `prep captions`).")
@click.option("--name", default=None, help="Dataset name given at prep (default: the newest caches of any name); "
                                            "validation and early stopping use its validation split.")
@click.option("--extra", "extras", multiple=True, metavar="NAME[:WEIGHT]",
              help="Also train on the train split of the caches named NAME under --cache (repeatable; config key "
                   "`extra`). WEIGHT w: round(w·n) of its n captions per epoch (default 1: each once).")
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
        from audioret.trainer.run_lock import wait_until_free

        if run_dir.exists():  # a directory that does not exist yet has no holder; probing would create it
            wait_until_free(run_dir, wait_lock)  # before starting the ranks; rank 0 takes the lock for the run
        argv = [a for a in sys.argv[1:]]
        sys.exit(distributed.launch_local(nproc, argv, nnodes=nnodes, rdzv_endpoint=rdzv_endpoint))
    if init_from is not None:
        overrides = (*overrides, f"init_from={init_from.resolve()}")
    if extras:
        overrides = (*overrides, f"extra={','.join(extras)}")

    _one_line_warnings()
    if resume and config_file is None and (run_dir / "config.toml").exists():
        config_file = run_dir / "config.toml"
    try:
        cfg = load_config(config_file, list(overrides))
        summary = train(cfg, cache_root, name, run_dir, resume=resume, audio_key=audio_key, caption_key=caption_key,
                        progress=progress, wait_lock=wait_lock)
        distributed.cleanup()
    except (ConfigError, RunExistsError) as exc:
        _fail(str(exc), EXIT_USAGE)
    click.echo(f"best validation mAP@10 {summary['best_map10']:.4f} at epoch {summary['best_epoch']} "
               f"({summary['epochs_run']} epochs); run in {summary['run_dir']}")


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
    checkpoint = checkpoint or "best"
    _one_line_warnings()
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
        _fail(str(exc), EXIT_USAGE)
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
    where = out_dir if out_dir is not None else run_dir
    click.echo(f"wrote {where / f'eval-{split}.json'} and {where / f'submission-{split}.csv'}")


@main.command("retrieve", context_settings=CONTEXT)
@no_verify_option
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("queries", nargs=-1, required=True)
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Results per query.")
@click.option("--split", default="evaluation", show_default=True, help="Search this split of the run's cache.")
@click.option("--audio-dir", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="Search the audio files in this folder instead (features cached by content, see --cache).")
@folder_cache_option
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--device", default=None, help="Override the run's device (cpu, cuda, ...).")
@batch_size_option
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def retrieve_command(run_dir: Path, queries: tuple[str, ...], k: int, split: str, audio_dir: Path | None,
                     cache_root: Path | None, checkpoint: str, device: str | None, batch_size: int | None,
                     as_json: bool) -> None:
    """Rank clips for free-text queries, best first, with cosine scores.

    \b
    Examples:
      audioret retrieve runs/base "a dog barks while rain falls" -k 5
      audioret retrieve runs/base "a bird sings" --audio-dir my_recordings/
    """
    from audioret.cli.predict_cmd import folder_embeddings
    from audioret.pipeline.text import normalise_caption
    from audioret.trainer.evaluate import LoadedRun

    normalised = [normalise_caption(q) for q in queries]
    for q, n in zip(queries, normalised):
        if not n:  # nothing to embed: an error, not a ranking of every clip by an empty text
            raise click.UsageError(f"query {q!r} is empty after normalisation (lower case, punctuation "
                                   "stripped); give words to search for, e.g. \"a dog barks\"")
    _one_line_warnings()
    failed: list[dict] = []
    run = LoadedRun(run_dir, checkpoint, device)
    if audio_dir is not None:
        names, emb, failed = folder_embeddings(run, audio_dir, cache_root, progress=False, batch_size=batch_size)
    else:
        names, emb = run.clip_embeddings(split, batch_size)
    results = run.retrieve(run.query_texts(queries, normalised), names, emb, k)
    if as_json:
        click.echo(json.dumps([{"query": q, "results": [{"clip": n, "score": s} for n, s in r]}
                               for q, r in zip(queries, results)], indent=1, ensure_ascii=False))
    else:
        for q, r in zip(queries, results):
            click.echo(f"query: {q}")
            for rank, (n, s) in enumerate(r, start=1):
                click.echo(f"  {rank:>3}  {s:+.4f}  {n}")
    if failed:
        from audioret.trainer.embedding_cache import publish_with_fallback, run_cache_dir

        def write(tmp: Path) -> None:
            tmp.write_text(json.dumps(failed, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        name = "retrieve-failures.json"  # beside the run, or in the user cache dir when the run is read-only
        report = publish_with_fallback(run_dir / name, run_cache_dir(run_dir) / name, write)
        click.echo(f"{len(failed)} file(s) could not be decoded; see {report}", err=True)
        sys.exit(EXIT_PARTIAL)


@preview.command("audio", context_settings=CONTEXT)
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

    _one_line_warnings()
    try:
        cfg = load_config(config_file, list(overrides))
        path = render_audio_preview(cfg, cache_root, name, out_file, n_clips, split, seed)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    click.echo(f"wrote {path}")

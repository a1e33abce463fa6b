"""`audioret predict`: a trained run's DCASE submission for a challenge set (a folder of audio + a query CSV).

Why the folder goes through `prep audio`'s keyed cache (pipeline/folder.py) instead of being decoded here: the
features of a folder do not depend on the model, so predicting with a second run (or again after a crash) reads
them back instead of decoding thousands of files again, and a file that cannot be decoded is reported the same way
everywhere. `retrieve --audio-dir` uses the same helper, so there is one mechanism for "features of a folder".
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from audioret.cli.groups import CONTEXT, EXIT_OK, EXIT_PARTIAL, encoding_option, main, no_verify_option

FOLDER_CACHE_HELP = ("Cache root for the folder's features (CACHE/audio/<key>/) [default: $AUDIORET_CACHE, else "
                     "$XDG_CACHE_HOME/audioret, else ~/.cache/audioret].")


def folder_cache_option(fn):
    """--cache for commands that read a folder of audio through the keyed feature cache."""
    return click.option("--cache", "cache_root", type=click.Path(path_type=Path, file_okay=False), default=None,
                        help=FOLDER_CACHE_HELP)(fn)


def batch_size_option(fn):
    """--batch-size for commands that embed clips (trainer/encoders/long_clips.py says how long clips count)."""
    return click.option("--batch-size", type=click.IntRange(min=1), default=None, metavar="N",
                        help="Clips embedded per batch [default: the run's eval_batch_size]. A clip longer than "
                             "30 s is embedded in pieces of at most 30 s, at most N x 10 s of them per batch, so "
                             "peak memory is set by N, not by the longest clip; lower N if memory runs out.")(fn)


def folder_embeddings(run, audio_dir: Path, cache_root: Path | None, workers: int | None = None,
                      progress: bool = True, batch_size: int | None = None):
    """(clip ids, embeddings (n, D), failed files) of every audio file under `audio_dir` for a LoadedRun `run`.

    Features come from the folder's keyed cache (made on first use); a line on stderr says how many files were
    decoded now (0 when the cache was complete). `batch_size`: clips per batch (None: the run's eval_batch_size;
    long clips: trainer/encoders/long_clips.py). Raises DatasetError when no file could be used.
    """
    from audioret.pipeline.datasets import DatasetError
    from audioret.pipeline.folder import default_cache_root, folder_features
    from audioret.trainer.data import check_audio_config
    from audioret.trainer.encoders import feature_spec

    cache_root = cache_root or default_cache_root()
    audio, prep = folder_features(audio_dir, cache_root, workers=workers, progress=progress, wait_lock=None,
                                  report=lambda line: None,
                                  features=feature_spec(run.cfg.audio_encoder).features_option)  # failures are listed once, below
    reused = f", {prep.n_reused} unchanged ones copied from an older cache" if prep.n_reused else ""
    click.echo(f"features of {len(audio)} file(s) from {prep.cache_dir} ({prep.n_decoded} decoded now{reused}, "
               f"{len(prep.failures)} failed)", err=True)
    for fail in prep.failures:
        click.echo(f"{fail['file']}: {fail['error']}", err=True)
    if len(audio) == 0:
        raise DatasetError(f"{audio_dir}: no decodable audio files ({len(prep.failures)} failed)")
    check_audio_config(audio.config, str(audio.directory), run.cfg.audio_encoder)
    emb = run.embed_features([audio.get(i) for i in range(len(audio))], batch_size)
    return list(audio.clip_ids), emb, list(prep.failures)


def failure_report_path(out: Path) -> Path:
    """predictions.csv → predictions.failures.jsonl (beside the submission, so each submission has its own)."""
    return out.with_name(f"{out.stem}.failures.jsonl")


@main.command("predict", context_settings=CONTEXT)
@no_verify_option
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--audio-dir", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Folder of the audio files to rank (searched recursively; clip name = path relative to it).")
@click.option("--queries", "queries_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="CSV with a caption column (DCASE evaluation form); other columns are ignored.")
@encoding_option("the --queries file")
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Submission CSV to write: caption,fname_1..fname_N (captions verbatim).")
@click.option("--top", type=click.IntRange(min=1), default=16, show_default=True,
              help="Files per query (N; at most the number of files).")
@folder_cache_option
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--device", default=None, help="Override the run's device (cpu, cuda, ...).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Decoding processes when features are not cached yet (default: all cores).")
@batch_size_option
@click.option("--progress/--no-progress", default=True, show_default=True, help="tqdm progress bar on stderr.")
def predict_command(run_dir: Path, audio_dir: Path, queries_file: Path, out_file: Path, top: int,
                    cache_root: Path | None, checkpoint: str, device: str | None, workers: int | None,
                    encoding: str | None, batch_size: int | None, progress: bool) -> None:
    """Rank every audio file of a folder for every query of a CSV; write the DCASE submission file.

    The folder's features are cached by content key (see --cache), so a second predict over the same folder, with
    this run or another, decodes nothing. Files that cannot be decoded are listed on stderr and in
    OUT_STEM.failures.jsonl beside --out; the others are ranked and the exit code is 3.

    \b
    Examples:
      audioret predict runs/base --audio-dir data/dcase2022/retrieval_audio \\
          --queries data/dcase2022/retrieval_captions.csv --out predictions.csv
      audioret predict runs/base --audio-dir eval_audio/ --queries queries.csv --top 10 --out sub.csv --cache caches/
    \b
    Exit codes: 0 ok, 1 failure, 2 usage, 3 partial (some files failed; see the .failures.jsonl report).
    """
    from audioret.cache.manifest import publish_failures
    from audioret.pipeline.queries import read_queries

    queries = read_queries(queries_file, encoding)  # a bad query file fails before the model loads or anything decodes
    from audioret.trainer.evaluate import LoadedRun, write_submission

    run = LoadedRun(run_dir, checkpoint, device)
    names, clip_emb, failures = folder_embeddings(run, audio_dir, cache_root, workers, progress, batch_size)
    texts = run.query_texts([q.text for q in queries], [q.normalised for q in queries])  # as the run was trained
    similarity = run.embed_texts(texts) @ clip_emb.T
    out_file.parent.mkdir(parents=True, exist_ok=True)
    write_submission(out_file, [q.text for q in queries], names, similarity, k=min(top, len(names)))
    report = failure_report_path(out_file)
    if failures:
        publish_failures(report.parent, failures, report.name)
        click.echo(f"{len(failures)} file(s) could not be decoded and are not ranked; see {report}", err=True)
    elif report.exists():
        report.unlink()  # a stale report of an earlier run would contradict this submission
    click.echo(f"wrote {out_file}: {len(queries)} queries × top {min(top, len(names))} of {len(names)} files")
    sys.exit(EXIT_PARTIAL if failures else EXIT_OK)

"""`audioret retrieve` and `audioret predict`: a trained run's ranking of clips for free-text queries, and its DCASE
submission for a challenge set (a folder of audio + a query CSV). The work is audioret/retrieval.py's; this module
reads the options, prints the rankings and the library's progress lines, and sets the exit code.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from audioret.cli.errors import one_line_warnings
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


def _stderr(line: str) -> None:
    """The library's progress lines (features decoded, files that failed), on stderr."""
    click.echo(line, err=True)


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
    from audioret.retrieval import EmptyQueryError, retrieve, write_retrieve_failures

    one_line_warnings()
    try:
        found = retrieve(run_dir, queries, k, split, audio_dir, cache_root, checkpoint, device, batch_size,
                         report=_stderr)
    except EmptyQueryError as exc:  # nothing to embed: an error, not a ranking of every clip by an empty text
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps([{"query": q, "results": [{"clip": n, "score": s} for n, s in r]}
                               for q, r in zip(found.queries, found.results, strict=True)],
                              indent=1, ensure_ascii=False))
    else:
        for q, r in zip(found.queries, found.results, strict=False):
            click.echo(f"query: {q}")
            for rank, (n, s) in enumerate(r, start=1):
                click.echo(f"  {rank:>3}  {s:+.4f}  {n}")
    if found.failures:
        report = write_retrieve_failures(run_dir, found.failures)
        click.echo(f"{len(found.failures)} file(s) could not be decoded; see {report}", err=True)
        sys.exit(EXIT_PARTIAL)


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
    from audioret.retrieval import predict

    done = predict(run_dir, audio_dir, queries_file, out_file, top, cache_root, checkpoint, device, workers, progress,
                   encoding=encoding, batch_size=batch_size, report=_stderr)
    if done.failures:
        click.echo(f"{len(done.failures)} file(s) could not be decoded and are not ranked; see {done.failure_report}",
                   err=True)
    click.echo(f"wrote {out_file}: {done.n_queries} queries × top {done.top} of {done.n_files} files")
    sys.exit(EXIT_PARTIAL if done.failures else EXIT_OK)

"""`audioret train --set audio_encoder=hf:<tiny AST>` end to end through the real CLI, on a generated dataset
prepped with `prep audio --features hf:<the same AST>`: it trains, records the model in the run, evaluates, and
a run killed with SIGKILL resumes to exactly the metrics of an uninterrupted run (marked slow, for CI time: the
kill/resume path is encoder-agnostic and runs for CNN10 and PaSST in the default suite)."""
from __future__ import annotations

import json

import pytest
import torch

from audioret.trainer.config import load_config
from support import run_cli
from support.demo import VAL_FIELDS, build_demo_cache, fast_overrides, kill_after_first_checkpoint, metrics_rows
from support.hf_models import tiny_ast, tiny_bert

EPOCHS = 3


@pytest.fixture(scope="module")
def ast_cache(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    model = tiny_ast(base / "hf-train-ast", max_length=100)  # 1 s: the clips (98 frames) fit
    tiny_bert(base / "hf-train-bert")
    return build_demo_cache(base, features=f"hf:{model}"), model


def train_args(cache, model, run, epochs: int, extra: tuple[str, ...] = ()) -> list:
    text = model.parent / "hf-train-bert"  # a one-layer BERT: the step's time is the AST's
    return ["train", "--cache", cache, "--name", "demo", "--out", run, "--no-progress",
            *fast_overrides(epochs, ["audio_width=1", f"audio_encoder=hf:{model}", "projection=linear",
                                     f"text_model={text}", *extra])]


@pytest.fixture(scope="module")
def trained(ast_cache, tmp_path_factory):
    cache, model = ast_cache
    run = tmp_path_factory.mktemp("hf-runs") / "a"
    run_cli(*train_args(cache, model, run, EPOCHS), check=True)
    return run


def test_ast_trains_records_its_model_and_evaluates(ast_cache, trained) -> None:
    _, model = ast_cache
    assert load_config(trained / "config.toml").audio_encoder == f"hf:{model}"
    best = torch.load(trained / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert best["config"]["audio_encoder"] == f"hf:{model}"
    assert any(k.startswith("audio.model.layers.") for k in best["model"])  # the AST is trained, stored
    rows = metrics_rows(trained)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    proc = run_cli("eval", trained, check=True)
    result = json.loads((trained / "eval-evaluation.json").read_text())
    assert (result["n_captions"], result["n_clips"]) == (40, 8) and f"{result['map10']:.4f}" in proc.stdout


@pytest.mark.slow
def test_ast_run_killed_and_resumed_matches_the_uninterrupted_run(ast_cache, trained, tmp_path) -> None:
    cache, model = ast_cache
    args = train_args(cache, model, tmp_path / "b", EPOCHS, ("resident=stream", "num_workers=1"))
    assert kill_after_first_checkpoint(args, tmp_path / "b") < EPOCHS
    run_cli(*args, "--resume", check=True)
    got, want = metrics_rows(tmp_path / "b"), metrics_rows(trained)
    assert [{k: r[k] for k in VAL_FIELDS} for r in got] == [{k: r[k] for k in VAL_FIELDS} for r in want]


def test_a_model_that_cannot_load_is_one_line_naming_it(ast_cache, tmp_path) -> None:
    cache, _ = ast_cache
    missing = tmp_path / "no-such-model"
    proc = run_cli(*train_args(cache, missing, tmp_path / "c", 1))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and f"hf:{missing}" in lines[0] and "folder not found" in lines[0]

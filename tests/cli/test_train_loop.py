"""End to end on a generated dataset through the real CLI: train beats chance, eval/submission agree with a
hand-computed ranking, retrieve works on the cache and on new files, and a run killed with SIGKILL resumes to
exactly the metrics of an uninterrupted run."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from audioret.trainer.config import load_config
from support import AUDIO, run_cli
from support.demo import VAL_FIELDS, build_demo_cache, fast_overrides, kill_after_first_checkpoint, metrics_rows

EPOCHS = 6


@pytest.fixture(scope="module")
def learnable_cache(tmp_path_factory):
    """The demo dataset at 96/24/24 clips: the one test dataset larger than the shared demo cache, because "beats
    chance by a clear margin" needs an evaluation split where chance is low (24 clips: mAP@10 0.12) and enough
    training clips to learn from in a few epochs."""
    return build_demo_cache(tmp_path_factory.getbasetemp(), "96,24,24", 1.0)


@pytest.fixture(scope="module")
def trained(learnable_cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "a"
    run_cli("train", "--cache", learnable_cache, "--name", "demo", "--out", run, *fast_overrides(EPOCHS),
            "--no-progress", check=True, timeout=900)  # a minute alone; several on a crowded 2-core machine
    return run


@pytest.fixture(scope="module")
def evaluated(trained):
    """`eval RUN` once (the evaluation split, the default): the scores and the submission both tests read."""
    return run_cli("eval", trained, check=True)


def test_train_writes_run_and_beats_chance(trained, evaluated):
    rows = metrics_rows(trained)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    assert set(rows[0]) == {"epoch", "loss", "val_map10", "val_r1", "val_r5", "val_r10", "lr", "seconds",
                            "data_wait_share"}
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    cfg = load_config(trained / "config.toml")
    assert cfg.epochs == EPOCHS and cfg.audio_width == 0.125 and cfg.text_lr == 0.0
    best_pt = torch.load(trained / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert {"model", "epoch", "config", "val", "token"} <= set(best_pt) and best_pt["config"] == cfg.to_dict()
    assert not {"optimizer", "scheduler", "rng"} & set(best_pt)  # weights only: optimiser state is for resuming
    # the frozen MiniLM (text_lr=0) is stored by name; its trained projection head is stored
    assert not any(k.startswith("text.transformer.") for k in best_pt["model"])
    assert any(k.startswith("text.proj.") for k in best_pt["model"])
    assert best_pt["frozen_text"]["text_model"] == cfg.text_model and len(best_pt["frozen_text"]["sha256"]) == 64
    last_pt = torch.load(trained / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert last_pt["finished"] and last_pt["epoch"] == EPOCHS and "model" not in last_pt  # the run ended here
    assert (trained / "checkpoints" / "last.pt").stat().st_size < 50_000
    best = max(float(r["val_map10"]) for r in rows)
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["best_map10"] == pytest.approx(best, abs=1e-6) and summary["epochs_run"] == EPOCHS

    result = json.loads((trained / "eval-evaluation.json").read_text())
    assert (result["n_captions"], result["n_clips"]) == (120, 24)
    chance = sum(1 / r for r in range(1, 11)) / 24
    assert result["chance_map10"] == pytest.approx(chance)
    assert result["map10"] > 2 * chance, result  # a clear margin over a random ranking
    assert f"{result['map10']:.4f}" in evaluated.stdout and "chance" in evaluated.stdout


def test_eval_and_submission_match_a_hand_computed_ranking(trained, evaluated):
    from audioret.cache.caption_shards import CaptionCache
    from audioret.trainer.evaluate import LoadedRun

    result = json.loads((trained / "eval-evaluation.json").read_text())
    run = LoadedRun(trained, "best", "cpu")
    audio, captions = run.open_caches()
    assert isinstance(captions, CaptionCache)
    clips = audio.ids_for_split("evaluation")
    clip_emb = run.embed_features([np.asarray(audio.get(c)) for c in clips]).numpy()
    rows = captions.all_captions("evaluation")
    text_emb = run.embed_texts([t for _, _, t in rows]).numpy()
    sim = text_emb @ clip_emb.T
    aps, tops = [], []
    for i, (cid, _, _) in enumerate(rows):  # by hand: sort by score (desc), ties by clip order
        order = sorted(range(len(clips)), key=lambda j: (-sim[i, j], j))
        rank = order.index(clips.index(cid)) + 1
        aps.append(1 / rank if rank <= 10 else 0.0)
        tops.append([clips[j] for j in order[:10]])
    assert result["map10"] == pytest.approx(float(np.mean(aps)), abs=1e-5)
    with open(trained / "submission-evaluation.csv", newline="", encoding="utf-8") as f:
        sub = list(csv.reader(f))
    assert sub[0] == ["caption"] + [f"fname_{k}" for k in range(1, 11)]
    assert [r[0] for r in sub[1:]] == [captions.raw(c)[i] for c, i, _ in rows]
    agree = sum(r[1:] == t for r, t in zip(sub[1:], tops, strict=False))
    assert agree >= len(tops) - 2  # float32 CPU batching may swap a near-tie; the ranking is the same


def test_retrieve_over_split_and_new_files(trained):
    proc = run_cli("retrieve", trained, "A high beep repeats!", "-k", "3", "--json", check=True)
    res = json.loads(proc.stdout)
    assert res[0]["query"] == "A high beep repeats!" and len(res[0]["results"]) == 3
    scores = [r["score"] for r in res[0]["results"]]
    assert scores == sorted(scores, reverse=True) and all(r["clip"].startswith("eva_") for r in res[0]["results"])
    assert list((trained / "embeddings").glob("*-evaluation-best.pt"))  # clip embeddings cached
    proc = run_cli("retrieve", trained, "a dog barks", "--audio-dir", AUDIO / "animals_cc0", check=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()[:1].isdigit()]
    assert len(lines) == 6 and any("dog.mp3" in ln for ln in lines)


# CI time: this path runs by default in tests/cli/test_multi_cache.py,
# test_killed_streamed_run_resumes_to_the_metrics_of_an_uninterrupted_one (CNN10, streamed with a worker, SIGKILL
# after epoch 1 of 2, the resumed metrics ≡ an uninterrupted resident run's); the refusal without --resume is in the
# finished-run case below
@pytest.mark.slow
def test_resume_after_sigkill_reaches_identical_metrics(demo_cache, tmp_path):
    """Streamed (a DataLoader worker), killed after epoch 1 of 2, resumed: the metrics of an uninterrupted
    resident run. On the small shared demo cache with a reference run of its own: the comparison needs no
    learning, only the same two epochs."""
    ref, run = tmp_path / "ref", tmp_path / "b"
    run_cli("train", "--cache", demo_cache, "--name", "demo", "--out", ref, *fast_overrides(2), "--no-progress",
            check=True)
    args = ["train", "--cache", demo_cache, "--name", "demo", "--out", run,
            *fast_overrides(2, ["resident=stream", "num_workers=1"]), "--no-progress"]
    assert kill_after_first_checkpoint(args, run) < 2
    assert run_cli("train", "--cache", demo_cache, "--name", "demo", "--out", run, "--no-progress").returncode == 2
    run_cli(*args, "--resume", check=True)
    got, want = metrics_rows(run), metrics_rows(ref)
    assert [r["epoch"] for r in got] == ["1", "2"]
    for g, w in zip(got, want, strict=False):  # stream mode + kill -9 + resume ≡ resident, uninterrupted
        assert {k: g[k] for k in VAL_FIELDS} == {k: w[k] for k in VAL_FIELDS}


def test_finished_run_resumes_as_finished_and_says_what_it_no_longer_has(learnable_cache, trained):
    before = (trained / "metrics.csv").read_text()
    refused = run_cli("train", "--cache", learnable_cache, "--name", "demo", "--out", trained, "--no-progress")
    assert refused.returncode == 2, refused.stderr  # RUN_DIR holds a run (checkpoints/last.pt): only --resume goes on
    again = run_cli("train", "--cache", learnable_cache, "--name", "demo", "--out", trained, *fast_overrides(EPOCHS),
                    "--resume", check=True)
    assert f"already finished at epoch {EPOCHS}" in again.stderr and "epoch 1/" not in again.stderr
    assert (trained / "metrics.csv").read_text() == before
    longer = run_cli("train", "--cache", learnable_cache, "--name", "demo", "--out", trained,
                     *fast_overrides(EPOCHS + 2), "--resume")
    assert longer.returncode == 2 and len(longer.stderr.strip().splitlines()) == 1, longer.stderr
    assert "keep_last" in longer.stderr and "--init-from" in longer.stderr
    last = run_cli("eval", trained, "--checkpoint", "last")
    assert last.returncode == 1 and "keeps no weights" in last.stderr and "Traceback" not in last.stderr


# CI time: tests/trainer/test_train_config.py checks every kind of bad --set value in process, and the exit-2
# "config key" line of `train` through the CLI
@pytest.mark.slow
def test_usage_errors_exit_2(demo_cache, tmp_path):
    for bad in (["--set", "p_syn=0.9"], ["--set", "no_such_key=1"], ["--set", "epochs=two"]):
        proc = run_cli("train", "--cache", demo_cache, "--name", "demo", "--out", tmp_path / "x", *bad)
        assert proc.returncode == 2 and "error:" in proc.stderr and "config key" in proc.stderr, proc.stderr
        assert not (tmp_path / "x" / "checkpoints").exists()


def test_cache_with_other_features_is_refused(tmp_path):
    from audioret.cache.audio_shards import build_audio_cache

    cfg = {"sample_rate": 32000, "hop_length": 320, "n_mels": 128}
    build_audio_cache(tmp_path, {"a.wav": np.zeros((50, 128), np.float32)}, cfg, name="wide")
    proc = run_cli("train", "--cache", tmp_path, "--name", "wide", "--out", tmp_path / "run")
    assert proc.returncode == 1 and "n_mels=128" in proc.stderr and "needs n_mels=64" in proc.stderr


def test_passt_cache_is_refused_in_one_line_naming_both_definitions(tmp_path):
    from audioret.cache.audio_shards import build_audio_cache
    from audioret.pipeline.feature_defs import feature_definition

    cfg = feature_definition("passt").cache_config()
    build_audio_cache(tmp_path, {"a.wav": np.zeros((50, 128), np.float32)}, cfg, name="passt")
    proc = run_cli("train", "--cache", tmp_path, "--name", "passt", "--out", tmp_path / "run")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "passt-mel" in lines[0] and "cnn10 encoder needs panns-logmel" in lines[0]


def test_preview_audio_png(demo_cache, tmp_path):
    out = tmp_path / "aug.png"
    run_cli("preview", "audio", "--cache", demo_cache, "--name", "demo", "--set", "g_max=6", "--set", "n_t=4",
            "--out", out, "-n", "3", check=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000

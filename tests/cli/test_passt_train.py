"""The PaSST encoder end to end through the real CLI, tiny (1 block, width 64) and offline: `prep audio --features
passt` of a generated dataset, `train --config configs/dcase2025_baseline.toml` (the DCASE 2025 recipe as shipped:
PaSST stride 16, RoBERTa with dropout 0.2 and the baseline's caption form, AdamW, warm-up + cosine, τ 0.05, linear
heads) with only sizes overridden — a tiny PaSST starting from a state dict in hear21passt's layout, a tiny
RoBERTa —, `eval`, a run killed with SIGKILL and resumed to the same metrics.csv, a 2-trial `search`, `predict` /
`retrieve --audio-dir` computing the PaSST mel of a folder, and caches or checkpoints for the other encoder refused
in one line."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from support import AUDIO, REPO, run_cli
from support.demo import (
    VAL_FIELDS,
    build_demo_cache,
    fast_overrides,
    kill_after_first_checkpoint,
    metrics_rows,
    write_base_toml,
)
from support.hf_models import tiny_roberta

EPOCHS = 2
ANIMALS = ["cat.mp3", "cow.mp3", "dog.mp3", "horse.mp3", "rooster.mp3", "sheep.mp3"]


@pytest.fixture(scope="module")
def passt_cache(tmp_path_factory) -> Path:
    """The demo dataset of the shared demo cache, prepped with `prep audio --features passt` (128-bin PaSST mel)."""
    return build_demo_cache(tmp_path_factory.getbasetemp(), features="passt")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A PaSST state dict of the tiny size in hear21passt's key layout, classification heads included (unused)."""
    from audioret.trainer.encoders.passt import PaSST

    torch.manual_seed(3)
    state = dict(PaSST(width=64, depth=1, stride=16).state_dict())
    state.update({"head.0.weight": torch.ones(64), "head.0.bias": torch.zeros(64),
                  "head.1.weight": torch.zeros(527, 64), "head.1.bias": torch.zeros(527),
                  "head_dist.weight": torch.zeros(527, 64), "head_dist.bias": torch.zeros(527)})
    path = tmp_path_factory.mktemp("passt-ckpt") / "passt-tiny.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def roberta(tmp_path_factory) -> Path:
    return tiny_roberta(tmp_path_factory.getbasetemp() / "tiny-roberta")


def train_args(cache: Path, run: Path, checkpoint: Path, roberta: Path, epochs: int = EPOCHS,
               extra: list | None = None) -> list:
    """The shipped baseline recipe with tiny sizes: the text tower trains (text_lr), as the baseline's does."""
    return ["train", "--cache", cache, "--name", "demo", "--out", run,
            "--config", REPO / "configs/dcase2025_baseline.toml",
            *fast_overrides(epochs, [f"audio_checkpoint={checkpoint}", f"text_model={roberta}", "text_lr=1e-3",
                                     *(extra or [])], encoder="passt")]


@pytest.fixture(scope="module")
def trained(passt_cache, checkpoint, roberta, tmp_path_factory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("passt-runs") / "a"
    # with progress: the load report is logged
    proc = run_cli(*train_args(passt_cache, run, checkpoint, roberta), check=True)
    return run, proc.stderr


def test_passt_run_trains_from_the_checkpoint_and_evaluates(trained, checkpoint):
    run, log = trained
    # 21 tensors: 5 tokens/positions, the patch conv's 2, 12 in the block, the final norm's 2; the heads unused
    assert f"audio checkpoint {checkpoint}: 21 tensors loaded, 0 missing, 0 mismatched, 6 unused" in log
    rows = metrics_rows(run)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    info = json.loads((run / "run.json").read_text())
    manifest = json.loads((Path(info["audio_dir"]) / "manifest.json").read_text())
    assert manifest["config"]["feature"] == "passt-mel" and manifest["config"]["n_mels"] == 128
    best = torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert best["config"]["audio_encoder"] == "passt" and best["config"]["passt_width"] == 64
    assert best["model"]["audio.passt.time_new_pos_embed"].shape == (1, 64, 1, 62)  # stride 16: the ap468 layout
    assert best["model"]["audio.proj.0.weight"].shape == (128, 64)  # projection=linear: the baseline's head
    assert best["model"]["text.proj.0.weight"].shape == (128, 32) and "text.proj.1.weight" not in best["model"]
    cfg = best["config"]  # the recipe's own settings, as shipped
    assert (cfg["optimizer"], cfg["schedule"], cfg["text_dropout"], cfg["temperature"], cfg["text_normalisation"]) \
        == ("adamw", "cosine", 0.2, 0.05, "dcase2025")
    assert "text.transformer.embeddings.word_embeddings.weight" in best["model"]  # RoBERTa trained, so stored

    proc = run_cli("eval", run, check=True)
    result = json.loads((run / "eval-evaluation.json").read_text())
    assert (result["n_captions"], result["n_clips"]) == (40, 8) and 0.0 < result["map10"] <= 1.0
    assert f"{result['map10']:.4f}" in proc.stdout


def test_passt_run_killed_and_resumed_writes_the_same_metrics(trained, passt_cache, checkpoint, roberta, tmp_path):
    """Patchout and SpecAugment draw from the epoch's generator, so the resumed epochs repeat the uninterrupted
    run's draws exactly (the data path is the encoder-agnostic one: streamed ≡ resident batches in
    tests/trainer/test_train_data.py, a streamed run killed and resumed in tests/cli/test_multi_cache.py)."""
    run = tmp_path / "b"
    args = [*train_args(passt_cache, run, checkpoint, roberta), "--no-progress"]
    assert kill_after_first_checkpoint(args, run) < EPOCHS
    run_cli(*args, "--resume", check=True)
    got, want = metrics_rows(run), metrics_rows(trained[0])
    assert [r["epoch"] for r in got] == [str(e) for e in range(1, EPOCHS + 1)]
    for g, w in zip(got, want, strict=False):
        assert {k: g[k] for k in VAL_FIELDS} == {k: w[k] for k in VAL_FIELDS}


@pytest.mark.slow  # CI time: tests/cli/test_search_train.py runs `search` with real training (CNN10) by default,
# and PaSST training through the CLI is this module's `trained` run; `search` never looks at the encoder
def test_search_runs_two_passt_trials(passt_cache, tmp_path):
    base = write_base_toml(tmp_path / "base.toml", fast_overrides(1, encoder="passt"))
    space = tmp_path / "space.toml"
    space.write_text("p_eda = [0.0, 0.5]\nw_t = [2, 20]\n")
    out = tmp_path / "s"
    r = run_cli("search", "--cache", passt_cache, "--name", "demo", "--out", out, "--config", base, "--space", space,
                "--trials", "2", "--initial", "2", "--workers", "1", "--seed", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    finished = [e for e in map(json.loads, (out / "trials.jsonl").read_text().splitlines())
                if e["event"] == "finished"]
    assert sorted(e["trial"] for e in finished) == [0, 1]
    assert all(0.0 <= e["metrics"]["best_map10"] <= 1.0 for e in finished)
    assert 'audio_encoder = "passt"' in (out / "best.toml").read_text()


def test_predict_and_retrieve_compute_the_passt_mel_of_a_folder(trained, tmp_path):
    """The folder's features are the PaSST mel (the run's feature, not the default PANNs log-mel), and the
    submission equals a ranking computed independently from each file's PaSST mel."""
    from audioret.pipeline.audio_io import load_mono
    from audioret.pipeline.passt_features import passt_mel
    from audioret.pipeline.text import normalise_caption
    from audioret.trainer.evaluate import LoadedRun

    run = trained[0]
    folder = tmp_path / "eval_audio"
    folder.mkdir()
    for name in ANIMALS:
        shutil.copy(AUDIO / "animals_cc0" / name, folder / name)
    queries = ["A dog barks.", "a rooster crows"]
    with open(tmp_path / "q.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["caption"], *[[q] for q in queries]])
    cache, out = tmp_path / "cache", tmp_path / "sub.csv"
    proc = run_cli("predict", run, "--audio-dir", folder, "--queries", tmp_path / "q.csv", "--out", out,
                   "--cache", cache, "--workers", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    (manifest,) = cache.glob("audio/*/manifest.json")
    assert json.loads(manifest.read_text())["config"]["feature"] == "passt-mel"

    loaded = LoadedRun(run, "best", "cpu")
    feats = [passt_mel(load_mono(folder / n, on_message=lambda m: None)).astype(np.float16) for n in ANIMALS]
    sim = (loaded.embed_texts([normalise_caption(q) for q in queries]) @ loaded.embed_features(feats).T).numpy()
    want = [[ANIMALS[j] for j in sorted(range(len(ANIMALS)), key=lambda j: (-row[j], j))] for row in sim]
    with open(out, newline="", encoding="utf-8") as f:
        assert [r[1:] for r in list(csv.reader(f))[1:]] == want

    ret = run_cli("retrieve", run, "a dog barks", "--audio-dir", folder, "--cache", cache, "-k", "6", "--json")
    assert ret.returncode == 0 and "(0 decoded now, 0 failed)" in ret.stderr, ret.stderr
    assert sorted(r["clip"] for r in json.loads(ret.stdout)[0]["results"]) == ANIMALS


def test_panns_cache_is_refused_for_passt_in_one_line_naming_both(tmp_path):
    from audioret.cache.audio_shards import build_audio_cache
    from audioret.pipeline.feature_defs import feature_definition

    cfg = feature_definition("panns").cache_config()
    build_audio_cache(tmp_path, {"a.wav": np.full((50, 64), -100.0, np.float32)}, cfg, name="logmel")
    proc = run_cli("train", "--cache", tmp_path, "--name", "logmel", "--out", tmp_path / "run",
                   *fast_overrides(1, encoder="passt"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "panns-logmel" in lines[0] and "passt encoder needs passt-mel" in lines[0]
    assert "--features passt" in lines[0]


def test_a_cnn10_checkpoint_for_passt_is_refused_before_anything_loads(tmp_path):
    """check_audio_checkpoint matches the file through the PaSST encoder (built on the meta device): a PANNs file
    is a usage error naming it, before the (missing) caches and text model are looked at."""
    ckpt = tmp_path / "Cnn10_mAP=0.380.pth"
    torch.save({"model": {"bn0.weight": torch.ones(64), "conv_block1.conv1.weight": torch.zeros(64, 1, 3, 3)}}, ckpt)
    (tmp_path / "cache").mkdir()
    proc = run_cli("train", "--cache", tmp_path / "cache", "--out", tmp_path / "run", "--no-progress",
                   "--set", "audio_encoder=passt", "--set", f"audio_checkpoint={ckpt}",
                   "--set", f"text_model={tmp_path / 'no-such-model'}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: config key 'audio_checkpoint': {ckpt}: no PaSST keys (patch_embed.*, blocks.*, *_pos_embed, ...) "
        "match this model")
    assert not (tmp_path / "run").exists()

"""One run on three caches (Clotho-, AudioCaps- and WavCaps-like, tests/support/three_datasets.py): the `extra`
config key, one epoch plan over all of them with global clip identity (ram ≡ stream, per-rank slices under DDP),
weights per dataset, the run's record of every cache (run.json, CACHE/runs/, `cache ls`), exact resume after SIGKILL,
validation and `eval` on the main cache, and `cache gc` keeping what a run uses."""
from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from audioret.trainer.config import ConfigError, diff, load_config, save_config
from audioret.trainer.sources import epoch_rows, weighted_count
from support import run_cli
from support.demo import VAL_FIELDS, fast_overrides, kill_after_first_checkpoint
from support.three_datasets import NAMES

EXTRAS = ["--extra", "audiocaps", "--extra", "wavcaps:0.5"]


def train_args(cache: Path, run: Path, epochs: int, sets: list[str] | None = None) -> list:
    return ["train", "--cache", cache, "--name", "clotho", *EXTRAS, "--out", run,
            *fast_overrides(epochs, ["max_seconds=1", *(sets or [])]), "--no-progress"]


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: r[k] for k in VAL_FIELDS} for r in csv.DictReader(f)]


def test_extra_key_from_toml_set_and_cli_spellings(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('extra = ["audiocaps", "wavcaps:0.50", "bbc:1"]\n')
    cfg = load_config(toml)
    assert cfg.extra == ["audiocaps", "wavcaps:0.5", "bbc"]  # canonical: one list, one spelling
    assert load_config(None, ["extra=audiocaps, wavcaps:.5,bbc"]).extra == cfg.extra
    assert load_config(None, ["extra="]).extra == [] == load_config(None).extra
    save_config(cfg, tmp_path / "saved.toml")
    assert load_config(tmp_path / "saved.toml") == cfg
    assert diff(cfg, load_config(None, ["extra=audiocaps,wavcaps:0.5"])) == {
        "extra": (["audiocaps", "wavcaps:0.5", "bbc"], ["audiocaps", "wavcaps:0.5"])}
    for bad, says in (("extra=wavcaps:0", "must be a number > 0"), ("extra=wavcaps:lots", "'lots' is not a number"),
                      ("extra=a,b,a:2", "'a' is listed twice"), ("extra=:2", "does not name a cache"),
                      ("extra=a:inf", "must be a number > 0")):
        with pytest.raises(ConfigError, match=says) as exc:
            load_config(None, [bad])
        assert "'extra'" in str(exc.value)
    toml.write_text("extra = [1, 2]\n")
    with pytest.raises(ConfigError, match="is not a list of cache names"):
        load_config(toml)


def test_weights_take_round_w_n_rows_drawn_from_seed_and_epoch():
    source = np.repeat([0, 1, 2, 3], [8, 10, 5, 3])  # rows 0-7 main, 8-17, 18-22, 23-25
    weights = [1, 0.5, 2.5, 0.5]
    a, again, other = (epoch_rows(source, weights, 0, e) for e in (1, 1, 2))
    assert np.array_equal(a, again)  # a function of (seed, epoch)
    counts = [Counter(a[source[a] == i].tolist()) for i in range(4)]
    assert sorted(counts[0]) == list(range(8)) and set(counts[0].values()) == {1}
    assert len(counts[1]) == 5 and set(counts[1].values()) == {1} and set(counts[1]) <= set(range(8, 18))
    assert sum(counts[2].values()) == 13 and set(counts[2]) == set(range(18, 23))  # 2 passes + 3 more
    assert set(counts[2].values()) == {2, 3}
    assert sum(counts[3].values()) == 2 == weighted_count(3, 0.5)  # 1.5 rounds half up
    assert not np.array_equal(a[source[a] == 1], other[source[other] == 1])  # another subset next epoch
    assert not np.array_equal(a, epoch_rows(source, weights, 1, 1))  # and under another seed
    assert np.array_equal(epoch_rows(source, [1, 1, 1, 1], 5, 3), np.arange(26))  # no weights: every row once


def test_a_weight_beyond_the_bound_is_a_usage_error_naming_the_epoch_it_implies(three_caches, tmp_path):
    """`--extra audiocaps:1e9` was an out-of-memory kill (the plan holds w·n rows); `--extra audiocaps:0` was
    blamed on --set. Both are usage errors now, before a model is built, and leave no run directory."""
    run = tmp_path / "r"
    base = ["train", "--cache", three_caches, "--name", "clotho", "--out", run, *fast_overrides(1), "--no-progress"]
    huge = run_cli(*base, "--extra", "audiocaps:1e9", timeout=120)
    lines = huge.stderr.strip().splitlines()
    assert huge.returncode == 2 and len(lines) == 1, huge.stderr
    assert "10,000,000,000 captions of audiocaps" in lines[0] and "1e+09 × its 10 training captions" in lines[0]
    assert "at most 100" in lines[0] and not run.exists()
    zero = run_cli(*base, "--extra", "audiocaps:0")
    assert zero.returncode == 2 and "'--extra'" in zero.stderr and "weight must be a number > 0" in zero.stderr
    assert "--set" not in zero.stderr
    assert "w ≤ 100" in run_cli("train", "--help").stdout


PLAN_SETS = ["max_seconds=0.5", "batch_size=12", "p_eda=0.5", "p_syn=0", "p_bt=0", "seed=4",
             "extra=audiocaps,wavcaps"]


def three_cache_data(cache: Path, sets: list[str], device: str = "cpu"):
    """TrainData over the three caches, Clotho-like first, as the training loop builds it."""
    from audioret.cache.audio_shards import AudioCache
    from audioret.cache.caption_shards import CaptionCache
    from audioret.trainer.data import TrainData
    from audioret.trainer.sources import open_extras

    cfg = load_config(None, sets)
    return TrainData(AudioCache.open(cache, name="clotho"), CaptionCache.open(cache, name="clotho"), "development",
                     cfg, torch.device(device), open_extras(cache, "clotho", cfg))


def test_one_plan_over_three_caches_with_global_clip_identity(three_caches):
    """Rows of different caches never share a clip position; the features behind a position are that cache's
    clip; every caption of every dataset once per epoch, no clip twice in a batch; ram ≡ stream (2 workers)."""
    ram = three_cache_data(three_caches, PLAN_SETS)
    stream = three_cache_data(three_caches, PLAN_SETS + ["resident=stream", "num_workers=2"])
    assert (ram.mode, stream.mode) == ("ram", "stream")
    table, sources = ram.table, ram.sources
    assert [s.name for s in sources] == list(NAMES) and [s.split for s in sources] == ["development", "train", "train"]
    per_source = [set(table.clip_pos[table.source == i].tolist()) for i in range(3)]
    assert [len(p) for p in per_source] == [8, 10, 10]
    assert not (per_source[0] & per_source[1] or per_source[0] & per_source[2] or per_source[1] & per_source[2])
    for r in (0, int(np.flatnonzero(table.source == 1)[3]), int(np.flatnonzero(table.source == 2)[-1])):
        own = sources[int(table.source[r])].audio
        assert np.array_equal(ram.audio.get(int(table.clip_pos[r])), own.get(table.clip_ids[r]))

    plan = ram.plan(3)
    entries = np.concatenate(plan.batches)
    assert sorted(plan.rows[entries].tolist()) == list(range(len(table))) == list(range(40 + 10 + 10))
    assert ram.nominal_steps() == -(-60 // 12)
    for a, b in zip(ram.epoch(3), stream.epoch(3), strict=True):
        assert len(set(a.clip_pos.tolist())) == len(a.texts)  # one caption per clip per batch, across caches
        assert torch.equal(a.x, b.x) and torch.equal(a.lengths, b.lengths) and torch.equal(a.clip_pos, b.clip_pos)
        assert a.texts == b.texts
    assert max(len(set(table.source[plan.rows[b]].tolist())) for b in plan.batches) == 3  # shuffled together


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_resident_batches_equal_the_ram_ones(three_caches):
    ram = three_cache_data(three_caches, PLAN_SETS)
    gpu = three_cache_data(three_caches, PLAN_SETS + ["resident=gpu", "device=cuda"], "cuda")
    assert gpu.mode == "gpu" and gpu.resident.features.device.type == "cuda"
    for a, b in zip(ram.epoch(2), gpu.epoch(2), strict=True):
        assert torch.equal(a.x, b.x.cpu()) and torch.equal(a.clip_pos, b.clip_pos.cpu()) and a.texts == b.texts


def test_weighted_extra_changes_only_its_own_share(three_caches):
    data = three_cache_data(three_caches, ["batch_size=8", "p_eda=0", "p_bt=0", "extra=audiocaps:2,wavcaps:0.3"])
    assert "10 captions of 10 clips (wavcaps train, weight 0.3: 3 per epoch)" in data.describe()
    plans = [data.plan(e) for e in (1, 2)]
    for plan in plans:
        rows = plan.rows[np.concatenate(plan.batches)]
        assert np.bincount(data.table.source[rows].tolist(), minlength=3).tolist() == [40, 20, 3]
        for b in plan.batches:  # a repeated caption (weight 2) still never meets its own clip in a batch
            pos = data.table.clip_pos[plan.rows[b]]
            assert len(set(pos.tolist())) == len(pos)
    wavcaps = [set(p.rows[data.table.source[p.rows] == 2].tolist()) for p in plans]
    assert wavcaps[0] != wavcaps[1]
    assert data.nominal_steps() == -(-63 // 8)


def test_each_rank_streams_its_slices_of_the_three_cache_plan(three_caches, tmp_path):
    """2 gloo ranks: each reads exactly its slices of one global plan over the three caches; within a global
    batch no clip position repeats across the ranks (the all-gathered same-clip mask is global)."""
    from support.ddp import WORLD, reserved_port, stream_worker

    with reserved_port() as port:
        mp.spawn(stream_worker, args=(port, str(three_caches), str(tmp_path), "clotho", "audiocaps,wavcaps"),
                 nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    clip_pos, source, plan = ranks[0]["clip_pos"], ranks[0]["source"], ranks[0]["global"]
    assert ranks[1]["global"] == plan and sorted(r for b in plan for r in b) == list(range(60))
    for r in ranks:
        assert r["read"] == [clip_pos[row] for row in r["rows"]]
    assert {source[row] for r in ranks for row in r["rows"]} == {0, 1, 2}
    at = 0
    for batch in plan:  # interleaved: rank r takes rows r, r + W, ... of each global batch
        per = len(batch) // WORLD
        mine = [ranks[r]["rows"][at:at + per] for r in range(WORLD)]
        assert mine == [batch[:WORLD * per][r::WORLD] for r in range(WORLD)]
        both = [row for part in mine for row in part]
        assert len({clip_pos[row] for row in both}) == len(both)
        at += per


def test_an_extra_cache_with_other_features_is_refused_naming_it(three_caches, tmp_path):
    from audioret.cache.audio_shards import build_audio_cache
    from audioret.cache.caption_shards import build_caption_cache
    from audioret.pipeline.feature_defs import feature_definition

    for kind in ("audio", "captions"):  # the Clotho-like caches, as they are
        for d in (three_caches / kind).iterdir():
            if json.loads((d / "manifest.json").read_text())["name"] == "clotho":
                shutil.copytree(d, tmp_path / kind / d.name)
    wide = build_audio_cache(tmp_path, {"a.wav": np.zeros((50, 128), np.float32)},
                             feature_definition("passt").cache_config(), name="wavcaps", splits={"a.wav": "train"})
    build_caption_cache(tmp_path, {"a.wav": ["a crow caws"]}, name="wavcaps", splits={"a.wav": "train"})
    proc = run_cli("train", "--cache", tmp_path, "--name", "clotho", "--extra", "wavcaps", "--out", tmp_path / "r")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert f"audio/{wide.key[:16]}" in lines[0] and "passt-mel" in lines[0] and "needs panns-logmel" in lines[0]
    nameless = run_cli("train", "--cache", tmp_path, "--extra", "wavcaps", "--out", tmp_path / "r")
    assert nameless.returncode == 2 and "needs --name" in nameless.stderr
    itself = run_cli("train", "--cache", tmp_path, "--name", "clotho", "--extra", "clotho", "--out", tmp_path / "r")
    assert itself.returncode == 2 and "is the main dataset" in itself.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


@pytest.fixture(scope="module")
def reference(three_caches, tmp_path_factory) -> Path:
    """Two epochs on all three caches, resident in RAM, uninterrupted."""
    run = tmp_path_factory.mktemp("multi") / "ref"
    run_cli(*train_args(three_caches, run, 2), check=True)
    return run


def test_killed_streamed_run_resumes_to_the_metrics_of_an_uninterrupted_one(three_caches, reference, tmp_path):
    """Streamed, killed with SIGKILL after epoch 1, resumed: the metrics of the uninterrupted resident run, though a
    newer "wavcaps" cache appeared meanwhile (a resume reopens the recorded caches by key, not the newest by
    name); resuming with another `--extra` list is refused like any changed config."""
    from audioret.cache.audio_shards import AudioCache, build_audio_cache
    from audioret.cache.caption_shards import build_caption_cache
    from audioret.trainer.loop import train

    root, run = tmp_path / "cache", tmp_path / "killed"
    shutil.copytree(three_caches, root)
    args = train_args(root, run, 2, ["resident=stream", "num_workers=1"])
    assert kill_after_first_checkpoint(args, run) == 1
    newer = build_audio_cache(root, {"x.wav": np.zeros((50, 64), np.float32)},
                              {"n_mels": 64, "sample_rate": 32000, "hop_length": 320}, name="wavcaps",
                              splits={"x.wav": "train"})
    build_caption_cache(root, {"x.wav": ["a new clip"]}, name="wavcaps", splits={"x.wav": "train"})
    assert AudioCache.open(root, name="wavcaps").key == newer.key  # what a fresh run would take now
    without_one = load_config(run / "config.toml", ["extra=audiocaps"])  # what `--resume --extra audiocaps` loads
    with pytest.raises(ConfigError, match=r"--resume with a changed config: extra \['audiocaps', 'wavcaps:0.5'\] "
                                          r"→ \['audiocaps'\]"):
        train(without_one, root, "clotho", run, resume=True, progress=False)
    run_cli(*args, "--resume", check=True)
    assert metrics(run) == metrics(reference)  # stream + kill -9 + resume ≡ resident, uninterrupted
    keys = [[(e["name"], e["audio_key"], e["caption_key"], e["weight"]) for e in json.loads(
        (r / "run.json").read_text())["extras"]] for r in (run, reference)]
    assert keys[0] == keys[1] and newer.key not in str(keys[0])


def test_run_records_every_cache_and_shows_in_cache_ls(three_caches, reference):
    from audioret.cache.audio_shards import AudioCache
    from audioret.cache.caption_shards import CaptionCache
    from audioret.cache.runs import read_runs, record_path

    info = json.loads((reference / "run.json").read_text())
    opened = {n: (AudioCache.open(three_caches, name=n), CaptionCache.open(three_caches, name=n)) for n in NAMES}
    assert (info["name"], info["audio_key"], info["caption_key"]) == ("clotho", opened["clotho"][0].key,
                                                                      opened["clotho"][1].key)
    assert [(e["name"], e["audio_key"], e["caption_key"], e["weight"], e["split"]) for e in info["extras"]] == [
        ("audiocaps", opened["audiocaps"][0].key, opened["audiocaps"][1].key, 1.0, "train"),
        ("wavcaps", opened["wavcaps"][0].key, opened["wavcaps"][1].key, 0.5, "train")]
    assert 'extra = [\n    "audiocaps",\n    "wavcaps:0.5",\n]' in (reference / "config.toml").read_text()

    record = next(r for r in read_runs(three_caches) if r.run_dir == reference.resolve())
    assert record.path == record_path(three_caches, reference)
    assert [(c.role, c.kind, c.name, c.key) for c in record.caches] == [
        (role, kind, n, opened[n][kind == "captions"].key)
        for n, role in zip(NAMES, ("main", "extra", "extra"), strict=False) for kind in ("audio", "captions")]
    out = run_cli("cache", "ls", three_caches, check=True).stdout
    listing = out[out.index(f"  {reference.resolve()}\n"):].splitlines()[1:7]
    for line, c in zip(listing, record.caches, strict=False):
        assert line.split() == [c.role, c.kind, c.name, c.key[:16]]
    runs = out.splitlines()[0].index(" runs ") + 1  # the column's offset (the table is left-aligned)
    for n in NAMES:  # every cache the run read counts it among its users
        row = next(ln for ln in out.splitlines() if ln.startswith("audio ") and f" {n} " in ln)
        assert int(row[runs:].split()[0]) >= 1


def test_eval_scores_the_main_cache_only(reference):
    proc = run_cli("eval", reference, check=True)
    result = json.loads((reference / "eval-evaluation.json").read_text())
    assert (result["n_captions"], result["n_clips"]) == (40, 8)  # Clotho-like evaluation split: 8 clips
    assert f"{result['map10']:.4f}" in proc.stdout
    best = torch.load(reference / "checkpoints" / "best.pt", weights_only=True)
    assert best["val"]["map10"] == pytest.approx(max(float(r["val_map10"]) for r in metrics(reference)), abs=1e-6)


def test_gc_never_removes_a_cache_a_registered_run_uses(tmp_path):
    """A used cache whose manifest got damaged would look like an abandoned prep: gc keeps it, naming the run;
    once the run directory is gone, its record and that cache are garbage."""
    from audioret.cache.audio_shards import build_audio_cache
    from audioret.cache.runs import CacheUse, register_run

    config = {"n_mels": 64, "sample_rate": 32000, "hop_length": 320}
    used = build_audio_cache(tmp_path, {"a.wav": np.zeros((50, 64), np.float32)}, config, name="clotho")
    other = build_audio_cache(tmp_path, {"b.wav": np.zeros((50, 64), np.float32)}, config, name="other")
    run = tmp_path / "runs-elsewhere" / "r1"
    run.mkdir(parents=True)
    register_run(tmp_path, run, [CacheUse("audio", "clotho", used.key, "main")])
    used_dir, other_dir = (tmp_path / "audio" / m.key[:16] for m in (used, other))
    for d in (used_dir, other_dir):
        (d / "manifest.json").write_text("{half a manifest")
    out = run_cli("cache", "gc", tmp_path, "--yes", check=True).stdout
    assert f"in use, left alone: {used_dir} (run {run.resolve()})" in out and f"removing {other_dir}" in out
    assert used_dir.is_dir() and not other_dir.exists()

    shutil.rmtree(run)
    ls = run_cli("cache", "ls", tmp_path, check=True).stdout
    assert f"{run.resolve()}  (directory gone" in ls
    out = run_cli("cache", "gc", tmp_path, "--yes", check=True).stdout
    assert f"removing {used_dir}" in out and "runs/" in out
    assert not used_dir.exists() and not list((tmp_path / "runs").iterdir())

"""The training loop, readable top to bottom: caches → data → model → epochs of (train, validate, checkpoint).

Why resumes are exact: everything random in an epoch is derived from (seed, epoch) or restored from the checkpoint
written at the end of the previous epoch (RNG states, every rank's own; optimiser moments; the scheduler), so a run
killed at any point and resumed writes the same metrics.csv rows as one never interrupted.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioret.cache.publish import publish_file, publish_json
from audioret.trainer import distributed as dist_hooks
from audioret.trainer.augment import augment_batch
from audioret.trainer.caption_text import caption_view
from audioret.trainer.checkpoint import (checkpoint_path, finished_state, frozen_text_record, gather_rank_rng,
                                load_checkpoint, load_model_state, model_weights, restore_rank_rng, save_checkpoint,
                                weights_sha256)
from audioret.trainer.config import (ConfigError, TrainConfig, check_audio_checkpoint, diff, from_dict, parse_extra,
                            resolve_split, save_config)
from audioret.trainer.data import Batch, TrainData, check_audio_config, feature_fits
from audioret.trainer.evaluate import RUN_INFO, autocast, build_model, resolve_device, score_split
from audioret.trainer.run_lock import run_dir_lock
from audioret.trainer.schedule import Schedule, make_optimizer, resume_problem
from audioret.trainer.sources import Source

METRICS_CSV = "metrics.csv"
METRIC_FIELDS = ["epoch", "loss", "val_map10", "val_r1", "val_r5", "val_r10", "lr", "seconds", "data_wait_share"]
# Keys that may change between a run and its resume without changing what is computed (or that extend it).
RESUME_FREE = {"epochs", "patience", "device", "num_workers", "resident", "memory_budget_gb", "eval_batch_size",
               "keep_last"}


class RunExistsError(RuntimeError):
    """RUN_DIR already holds a run and --resume was not given."""


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, 0xA06]).generate_state(1, dtype=np.uint64)[0] >> 1)


def open_audio_cache(cache_root: Path, name: str, audio_key: str | None = None, encoder: str = "cnn10"):
    """The audio cache to train on: by key, or the newest complete one named `name` whose features fit `encoder`
    (caches of several feature definitions can share a name, e.g. `prep audio --features passt` beside the
    default). When none fits, check_audio_config refuses the newest one, naming both definitions."""
    from audioret.cache.audio_shards import AudioCache
    from audioret.cache.manifest import CacheNotFoundError, resolve_manifest

    def trainable(m) -> bool:  # a `folder` cache (predict / retrieve --audio-dir: no captions) never is
        return feature_fits(m.config, encoder) and m.dataset != "folder"

    audio = AudioCache.open(cache_root, name=None if audio_key else name, key=audio_key)
    if not audio_key and not trainable(audio.manifest):
        try:
            directory, manifest = resolve_manifest(cache_root, "audio", name=name, where=trainable)
            audio = AudioCache(directory, manifest=manifest)
        except CacheNotFoundError:
            pass
    check_audio_config(audio.config, str(audio.directory), encoder)
    return audio


def open_caches(cache_root: Path, name: str, audio_key: str | None, caption_key: str | None,
                encoder: str = "cnn10"):
    from audioret.cache.caption_shards import CaptionCache

    audio = open_audio_cache(cache_root, name, audio_key, encoder)
    captions = CaptionCache.open(cache_root, name=None if caption_key else name, key=caption_key)
    return audio, captions


def open_extras(cache_root: Path, main_name: str | None, cfg: TrainConfig,
                recorded: list[dict] | None = None) -> list[Source]:
    """The datasets of `cfg.extra`, each training on its own train split: on a fresh run the newest caches of each
    name whose features fit the encoder; on a resume (`recorded`: RUN_DIR/run.json's "extras") exactly the
    caches the run started with, by key."""
    if cfg.extra and not main_name:
        raise ConfigError("config key 'extra' needs --name: the main dataset, whose validation split decides "
                          "early stopping and the best checkpoint")
    by_name = {r["name"]: r for r in recorded or []}
    out = []
    for item in cfg.extra:
        name, weight = parse_extra(item)
        if name == main_name:
            raise ConfigError(f"config key 'extra': {name!r} is the main dataset (--name) already")
        if recorded is not None and name not in by_name:
            raise ConfigError(f"{RUN_INFO} of this run records no extra cache {name!r}")
        rec = by_name.get(name, {})
        audio, captions = open_caches(cache_root, name, rec.get("audio_key"), rec.get("caption_key"),
                                      cfg.audio_encoder)
        try:
            split = resolve_split("train", set(audio.splits))
        except ConfigError as exc:
            raise ConfigError(f"extra cache {name!r} ({audio.directory}): {exc}") from None
        out.append(Source(name, audio, captions, split, weight))
    return out


def register_caches(cache_root: Path, run_dir: Path, sources: list[Source]) -> None:
    """Record under CACHE/runs/ which caches this run reads, the main dataset's first (cache/runs.py: `cache ls`
    shows them, `cache gc` keeps them). A read-only cache root only costs the record: the run goes on, warned."""
    from audioret.cache.runs import CacheUse, register_run

    uses = [CacheUse(kind, cache.manifest.name, cache.key, "extra" if i else "main")
            for i, s in enumerate(sources) for kind, cache in (("audio", s.audio), ("captions", s.captions))]
    try:
        register_run(cache_root, run_dir, uses)
    except OSError as exc:
        print(f"warning: {cache_root}: cannot record this run under runs/ ({exc.strerror}); `cache ls` will not "
              "list it", file=sys.stderr, flush=True)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; metrics.csv always exists
        return None
    return SummaryWriter(str(run_dir / "tb"))


def _rewrite_metrics(path: Path, keep_until: int) -> None:
    """On resume: drop rows of epochs after the checkpoint (written before a kill, about to be redone)."""
    rows = []
    if path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= keep_until]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, METRIC_FIELDS)
            w.writeheader()
            w.writerows(rows)
    publish_file(path, write)


def train_step(model, batch: Batch, optimizer, cfg: TrainConfig, generator: torch.Generator,
               device: torch.device, schedule: Schedule | None = None) -> float:
    """One optimisation step on a batch already on the device; returns the loss."""
    x = augment_batch(batch.x, batch.lengths, cfg, generator, dist_hooks.unwrap(model).audio.scale)  # gain → Freq-MixStyle
    tokens = dist_hooks.unwrap(model).text.tokenize(batch.texts)
    with autocast(device):
        audio_emb, text_emb, scale = model(x, batch.lengths, tokens, generator=generator)
    # Global-batch NT-Xent under DDP (gather with gradient), the plain one otherwise.
    loss = dist_hooks.contrastive_loss(audio_emb.float(), text_emb.float(), scale, batch.clip_pos)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    if schedule is not None:
        schedule.after_step()
    return float(loss.detach())


def train_epoch(model, data: TrainData, optimizer, cfg: TrainConfig, epoch: int, generator: torch.Generator,
                device: torch.device, progress: bool, schedule: Schedule | None = None) -> dict[str, float]:
    """One pass over every training caption; returns mean loss, seconds and the share spent waiting for data."""
    from tqdm import tqdm

    model.train()
    generator.manual_seed(epoch_seed(cfg.seed, epoch) + dist_hooks.get_rank())
    total, count, wait = 0.0, 0, 0.0
    start = time.perf_counter()
    batches = data.epoch(epoch)
    bar = tqdm(total=data.n_batches(epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False,
               disable=not progress, file=sys.stderr)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        wait += time.perf_counter() - t0
        if batch is None:
            break
        total += train_step(model, batch, optimizer, cfg, generator, device, schedule) * len(batch.texts)
        count += len(batch.texts)
        bar.update(1)
        bar.set_postfix(loss=f"{total / count:.3f}")
    bar.close()
    seconds = time.perf_counter() - start
    return {"loss": dist_hooks.all_reduce_mean(total / max(1, count)), "seconds": seconds, "data_wait_share": wait / max(seconds, 1e-9)}


def train(cfg: TrainConfig, cache_root: Path, name: str, run_dir: Path, resume: bool = False,
          audio_key: str | None = None, caption_key: str | None = None, progress: bool = True,
          wait_lock: float | None = 0.0) -> dict[str, Any]:
    """Train (or resume) one run in `run_dir`; returns a summary (best_map10, best_epoch, epochs_run, run_dir, ...).

    Writes RUN_DIR/{run.json, config.toml, metrics.csv, summary.json, checkpoints/{last,best}.pt}, holding the
    run directory's writer lock throughout (trainer/run_lock.py): a second run on the same directory raises
    CacheLockedError, or waits up to `wait_lock` seconds (None: forever) for the first to end.
    """
    if not checkpoint_path(run_dir, "last").exists():
        check_audio_checkpoint(cfg)  # a fresh run loads it: refuse a bad one before the lock, caches and models
    dist_hooks.init_distributed(device=cfg.device)
    with run_dir_lock(run_dir, wait_lock):
        return _train(cfg, Path(cache_root), name, Path(run_dir), resume, audio_key, caption_key, progress)


def _train(cfg: TrainConfig, cache_root: Path, name: str, run_dir: Path, resume: bool, audio_key: str | None,
           caption_key: str | None, progress: bool) -> dict[str, Any]:
    """The run itself; the caller holds the run directory's lock and has joined the process group."""
    last_path = checkpoint_path(run_dir, "last")
    state, recorded_extras = None, None
    if last_path.exists():
        if not resume:
            raise RunExistsError(f"{run_dir}: already holds a run; pass --resume to continue it or use another --out")
        state = load_checkpoint(last_path)
        saved = from_dict(state["config"], f"{last_path} config")
        changed = diff(saved, cfg, ignore=RESUME_FREE)
        if changed:
            raise ConfigError("--resume with a changed config: " + ", ".join(
                f"{k} {a!r} → {b!r}" for k, (a, b) in sorted(changed.items())))
        problem = resume_problem(saved, cfg)
        if problem:
            raise ConfigError(f"{run_dir}: {problem}")
        info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
        audio_key, caption_key = audio_key or info["audio_key"], caption_key or info["caption_key"]
        recorded_extras = info.get("extras", [])
        if state["stopped"] or int(state["epoch"]) >= cfg.epochs:
            _log(progress, f"{run_dir}: run already finished at epoch {state['epoch']}")
            summary_path = run_dir / "summary.json"
            if summary_path.exists():
                return json.loads(summary_path.read_text(encoding="utf-8"))
            return {"best_map10": float(state["best_map10"]), "best_epoch": int(state["best_epoch"]),
                    "epochs_run": int(state["epoch"]), "stopped_early": bool(state["stopped"]), "run_dir": str(run_dir)}
        if "model" not in state:
            raise ConfigError(f"{run_dir}: the run finished at epoch {state['epoch']} and kept no training state "
                              f"(keep_last=false), so it cannot be extended to epochs={cfg.epochs}; start a new run "
                              f"with --init-from {run_dir}, or train with --set keep_last=true to keep it extendable")

    # 1. Seeds, device, caches, data. Distributed: rank 0 alone writes and logs; batches are per-rank slices.
    rank = dist_hooks.get_rank()
    main, progress = rank == 0, progress and rank == 0
    torch.manual_seed(cfg.seed + rank)
    np.random.seed((cfg.seed + rank) % 2**32)
    random.seed(cfg.seed + rank)
    device = dist_hooks.device_for_rank(str(resolve_device(cfg.device)))
    audio, captions = open_caches(cache_root, name, audio_key, caption_key, cfg.audio_encoder)
    captions = caption_view(captions, cfg.text_normalisation)  # validation reads captions as training does
    train_split = resolve_split("train", set(audio.splits))
    val_split = resolve_split("validation", set(audio.splits))
    extras = open_extras(cache_root, name, cfg, recorded_extras)
    data_cfg = dataclasses.replace(cfg, batch_size=dist_hooks.global_batch_size(cfg.batch_size))
    data = dist_hooks.shard_train_data(TrainData(audio, captions, train_split, data_cfg, device, extras))
    _log(progress, f"train: {data.describe()}; validation: {val_split}; data {data.mode}, device {device}")

    # 2. Model, optimiser, schedule.
    model = build_model(cfg, audio.n_mels)
    pretrained_text = weights_sha256(model.text.transformer) if cfg.effective_text_lr() == 0 else None
    if cfg.audio_checkpoint and state is None:
        report = model.audio.load_checkpoint(cfg.audio_checkpoint)  # PANNs Cnn10 or PaSST, by the encoder
        _log(progress, f"audio checkpoint {cfg.audio_checkpoint}: {len(report['loaded'])} tensors loaded, "
                       f"{len(report['missing'])} missing, {len(report['mismatched'])} mismatched, "
                       f"{len(report['unexpected'])} unused")
    if cfg.init_from and state is None:
        from audioret.trainer.init_from import load_init_weights

        record = load_init_weights(model, cfg.init_from)
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            publish_json(run_dir / "init_from.json", record)
        _log(progress, f"initialised from {record.get('source', cfg.init_from)}")
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = Schedule(optimizer, cfg, data.nominal_steps())
    generator = torch.Generator(device=device)
    best, best_epoch, bad_epochs, start_epoch = -1.0, 0, 0, 1

    # 3. Fresh run: record what it uses. Resume: restore everything from the last checkpoint.
    metrics_path = run_dir / METRICS_CSV
    if state is None and main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        publish_json(run_dir / RUN_INFO, {"cache_root": str(cache_root.resolve()), "name": name,
                                          "audio_key": audio.key, "caption_key": captions.key,
                                          "audio_dir": str(audio.directory), "caption_dir": str(captions.directory),
                                          "extras": [s.record() for s in extras]})
        save_config(cfg, run_dir / "config.toml")
        _rewrite_metrics(metrics_path, 0)
    elif state is not None:
        load_model_state(model, state, last_path)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        warning = restore_rank_rng(state, {"augment": generator}, rank, dist_hooks.get_world_size(), cfg.seed,
                                   int(state["epoch"]))
        if warning and main:
            print(f"{run_dir}: {warning}", file=sys.stderr, flush=True)
        best, best_epoch, bad_epochs = float(state["best_map10"]), int(state["best_epoch"]), int(state["bad_epochs"])
        start_epoch = int(state["epoch"]) + 1
        if main:
            save_config(cfg, run_dir / "config.toml")
            _rewrite_metrics(metrics_path, int(state["epoch"]))
        _log(progress, f"resuming {run_dir} after epoch {state['epoch']} (best mAP@10 {best:.4f} @ {best_epoch})")
    if main:
        register_caches(cache_root, run_dir, data.sources)
    frozen_text = frozen_text_record(model, cfg.text_model, pretrained_text)  # stored by name when unchanged
    dist_hooks.barrier()
    ddp_model = dist_hooks.wrap_model(model, device)
    writer = _tensorboard(run_dir) if main else None

    # 4. Epochs: train, validate, log, checkpoint, stop early.
    t_run = time.perf_counter()
    epoch, stopped = start_epoch - 1, False
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        stats = train_epoch(ddp_model, data, optimizer, cfg, epoch, generator, device, progress, scheduler)
        val = dist_hooks.broadcast_object(
            score_split(model, audio, captions, val_split, device, cfg.eval_batch_size).metrics if main else None)
        scheduler.after_epoch()
        row = {"epoch": epoch, "loss": f"{stats['loss']:.6f}", "val_map10": f"{val['map10']:.6f}",
               "val_r1": f"{val['r1']:.6f}", "val_r5": f"{val['r5']:.6f}", "val_r10": f"{val['r10']:.6f}",
               "lr": f"{lr:.3e}", "seconds": f"{time.perf_counter() - t0:.2f}",
               "data_wait_share": f"{stats['data_wait_share']:.4f}"}
        improved = val["map10"] > best
        if improved:
            best, best_epoch, bad_epochs = val["map10"], epoch, 0
        else:
            bad_epochs += 1
        stopped = cfg.patience > 0 and bad_epochs >= cfg.patience
        rng_ranks = gather_rank_rng({"augment": generator})  # every rank's states (a collective)
        run_state = {"epoch": epoch, "config": cfg.to_dict(), "best_map10": best, "best_epoch": best_epoch,
                     "bad_epochs": bad_epochs, "val": val, "stopped": stopped, "frozen_text": frozen_text}
        if main:
            with open(metrics_path, "a", newline="", encoding="utf-8") as f:  # before the checkpoint: a kill in
                csv.DictWriter(f, METRIC_FIELDS).writerow(row)  # between redoes this epoch and rewrites its row
            weights = model_weights(model, frozen_text)
            if improved:  # weights only: optimiser state serves a resume, and that reads last.pt
                save_checkpoint(checkpoint_path(run_dir, "best"), {"model": weights, **run_state})
            if (stopped or epoch == cfg.epochs) and not cfg.keep_last:
                save_checkpoint(last_path, finished_state(run_state))  # the run ends here: no weights kept
            else:
                save_checkpoint(last_path, {"model": weights, "optimizer": optimizer.state_dict(),
                                            "scheduler": scheduler.state_dict(), "rng": rng_ranks[0],
                                            "rng_ranks": rng_ranks, **run_state})
        if writer is not None:
            for k in ("loss", "val_map10", "val_r1", "val_r5", "val_r10", "lr", "data_wait_share"):
                writer.add_scalar(k, float(row[k]), epoch)
            writer.flush()
        _log(progress, f"epoch {epoch}/{cfg.epochs}  loss {stats['loss']:.4f}  val mAP@10 {val['map10']:.4f}  "
                       f"R@1 {val['r1']:.3f}  best {best:.4f} @{best_epoch}  {row['seconds']} s  "
                       f"data wait {100 * stats['data_wait_share']:.1f}%")
        if stopped:
            _log(progress, f"early stop: no better validation mAP@10 for {cfg.patience} epochs")
            break
    if writer is not None:
        writer.close()
    summary = {"best_map10": best, "best_epoch": best_epoch, "epochs_run": epoch, "stopped_early": stopped,
               "run_dir": str(run_dir), "mode": data.mode, "device": str(device), "audio_key": audio.key,
               "caption_key": captions.key, "seconds": time.perf_counter() - t_run}
    if main:
        publish_json(run_dir / "summary.json", summary)
    dist_hooks.barrier()
    return summary

"""The training loop, readable top to bottom: caches → data → model → epochs of (train, validate, checkpoint).

`_train` is the run in steps, each a function below it. Why resumes are exact: everything random in an epoch is
derived from (seed, epoch) or restored from the checkpoint written at the end of the previous epoch (RNG states,
every rank's own; optimiser moments; the scheduler), so a run killed at any point and resumed writes the same
metrics.csv rows as one never interrupted.
"""
from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioret.cache.publish import publish_json
from audioret.trainer import distributed as dist_hooks
from audioret.trainer.augment import augment_batch
from audioret.trainer.caption_text import caption_view
from audioret.trainer.checkpoint import (
    RUN_INFO,
    checkpoint_path,
    finished_state,
    frozen_text_record,
    gather_rank_rng,
    load_checkpoint,
    load_model_state,
    model_weights,
    restore_rank_rng,
    save_checkpoint,
    weights_sha256,
)
from audioret.trainer.config import (
    ConfigError,
    TrainConfig,
    check_audio_checkpoint,
    diff,
    from_dict,
    resolve_split,
    save_config,
)
from audioret.trainer.data import Batch, TrainData
from audioret.trainer.device import autocast, resolve_device
from audioret.trainer.evaluate import score_split
from audioret.trainer.loss_distributed import contrastive_loss
from audioret.trainer.metrics_log import (
    METRICS_CSV,
    append_metrics_row,
    rewrite_metrics,
    tensorboard_writer,
    write_scalars,
)
from audioret.trainer.models import BiEncoder, build_model
from audioret.trainer.run_lock import run_dir_lock
from audioret.trainer.schedule import Schedule, make_torch_optimizer, resume_problem
from audioret.trainer.sources import Source, open_caches, open_extras, register_caches

# run.json "clip_identity": clips of several caches are one clip when their source ids match (trainer/source_ids.py);
# a run.json without it is from before, and its resume keeps the masks it began with (bit-exact)
CLIP_IDENTITY = "source-id"
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


def train_step(model, batch: Batch, optimizer, cfg: TrainConfig, generator: torch.Generator,
               device: torch.device, schedule: Schedule | None = None) -> float:
    """One optimisation step on a batch already on the device; returns the loss."""
    # gain → Freq-MixStyle
    x = augment_batch(batch.x, batch.lengths, cfg, generator, dist_hooks.unwrap(model).audio.scale)
    tokens = dist_hooks.unwrap(model).text.tokenize(batch.texts)
    with autocast(device):
        audio_emb, text_emb, scale = model(x, batch.lengths, tokens, generator=generator)
    # Global-batch NT-Xent under DDP (gather with gradient), the plain one otherwise.
    same_clip = batch.clip_pos if batch.same_clip is None else batch.same_clip  # one recording, two caches: one clip
    loss = contrastive_loss(audio_emb.float(), text_emb.float(), scale, same_clip)
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
    return {"loss": dist_hooks.all_reduce_mean(total / max(1, count)), "seconds": seconds,
            "data_wait_share": wait / max(seconds, 1e-9)}


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


@dataclass
class _Run:
    """What the epochs of one run work with, set up by `_train`'s first steps."""

    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    main: bool  # rank 0: the one process that writes and logs
    progress: bool
    audio: Any  # the main dataset's caches: validation and the summary name them
    captions: Any
    val_split: str
    extras: list[Source]  # the datasets of `extra` (config), as opened
    data: TrainData
    model: BiEncoder
    optimizer: torch.optim.Optimizer
    scheduler: Schedule
    generator: torch.Generator
    pretrained_text: str | None  # sha256 of the frozen pretrained text transformer (None: it trains)


@dataclass
class _Tally:
    """Early-stopping bookkeeping, checkpointed every epoch."""

    best: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    start_epoch: int = 1


def _train(cfg: TrainConfig, cache_root: Path, name: str, run_dir: Path, resume: bool, audio_key: str | None,
           caption_key: str | None, progress: bool) -> dict[str, Any]:
    """The run itself; the caller holds the run directory's lock and has joined the process group."""
    state, info = _resume_point(cfg, run_dir, resume)
    if state is not None and (state["stopped"] or int(state["epoch"]) >= cfg.epochs):
        _log(progress, f"{run_dir}: run already finished at epoch {state['epoch']}")
        return _finished_summary(run_dir, state)
    if state is not None and "model" not in state:
        raise ConfigError(f"{run_dir}: the run finished at epoch {state['epoch']} and kept no training state "
                          f"(keep_last=false), so it cannot be extended to epochs={cfg.epochs}; start a new run "
                          f"with --init-from {run_dir}, or train with --set keep_last=true to keep it extendable")
    run = _set_up(cfg, cache_root, name, run_dir, state, info, audio_key, caption_key, progress)
    tally = _start_or_restore(run, cache_root, name, state)
    frozen_text = frozen_text_record(run.model, cfg.text_model, run.pretrained_text)  # stored by name when unchanged
    dist_hooks.barrier()
    ddp_model = dist_hooks.wrap_model(run.model, run.device)
    writer = tensorboard_writer(run_dir) if run.main else None
    t_run = time.perf_counter()
    epoch, stopped = _run_epochs(run, tally, ddp_model, frozen_text, writer)
    if writer is not None:
        writer.close()
    summary = {"best_map10": tally.best, "best_epoch": tally.best_epoch, "epochs_run": epoch,
               "stopped_early": stopped, "run_dir": str(run_dir), "mode": run.data.mode, "device": str(run.device),
               "audio_key": run.audio.key, "caption_key": run.captions.key, "seconds": time.perf_counter() - t_run}
    if run.main:
        publish_json(run_dir / "summary.json", summary)
    dist_hooks.barrier()
    return summary


def _resume_point(cfg: TrainConfig, run_dir: Path, resume: bool) -> tuple[dict | None, dict]:
    """(last checkpoint, RUN_DIR/run.json) of the run to resume, (None, {}) for a fresh one. Refuses an existing
    run without --resume and a resume whose config changed what is computed."""
    last_path = checkpoint_path(run_dir, "last")
    if not last_path.exists():
        return None, {}
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
    return state, json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))


def _finished_summary(run_dir: Path, state: dict) -> dict[str, Any]:
    """What a finished run reports when asked to resume: its summary.json, else what its checkpoint says."""
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text(encoding="utf-8"))
    return {"best_map10": float(state["best_map10"]), "best_epoch": int(state["best_epoch"]),
            "epochs_run": int(state["epoch"]), "stopped_early": bool(state["stopped"]), "run_dir": str(run_dir)}


def _set_up(cfg: TrainConfig, cache_root: Path, name: str, run_dir: Path, state: dict | None, info: dict,
            audio_key: str | None, caption_key: str | None, progress: bool) -> _Run:
    """Seeds, device, caches, data, then model, optimiser, schedule. Distributed: rank 0 alone writes and logs;
    batches are per-rank slices. A resume reads the caches its run.json names (unless keys are given)."""
    rank = dist_hooks.get_rank()
    main, progress = rank == 0, progress and rank == 0
    torch.manual_seed(cfg.seed + rank)
    np.random.seed((cfg.seed + rank) % 2**32)
    random.seed(cfg.seed + rank)
    device = dist_hooks.device_for_rank(str(resolve_device(cfg.device)))
    audio_key, caption_key = audio_key or info.get("audio_key"), caption_key or info.get("caption_key")
    audio, captions = open_caches(cache_root, name, audio_key, caption_key, cfg.audio_encoder)
    captions = caption_view(captions, cfg.text_normalisation)  # validation reads captions as training does
    train_split = resolve_split("train", set(audio.splits))
    val_split = resolve_split("validation", set(audio.splits))
    extras = open_extras(cache_root, name, cfg, info.get("extras", []) if state is not None else None)
    data = _train_data(cfg, audio, captions, train_split, device, extras, info if state is not None else None)
    _log(progress, f"train: {data.describe()}; validation: {val_split}; data {data.mode}, device {device}")
    if main and data.duplicates and data.duplicates.pairs:  # said even without --progress: it changes negatives
        print(f"train: {data.duplicates.summary()}", file=sys.stderr, flush=True)

    model = build_model(cfg, audio.n_mels)
    pretrained_text = weights_sha256(model.text.transformer) if cfg.effective_text_lr() == 0 else None
    if state is None:
        _initial_weights(model, cfg, run_dir, main, progress)
    model.to(device)
    optimizer = make_torch_optimizer(model, cfg)
    scheduler = Schedule(optimizer, cfg, data.nominal_steps())
    return _Run(cfg, run_dir, device, main, progress, audio, captions, val_split, extras, data, model, optimizer,
                scheduler, torch.Generator(device=device), pretrained_text)


def _train_data(cfg: TrainConfig, audio: Any, captions: Any, split: str, device: torch.device, extras: list[Source],
                resumed: dict | None) -> TrainData:
    """This rank's training batches, planned at the global batch size. A resume (`resumed`: its run.json) keeps the
    rank slicing and clip identity its run records; a run from before either was recorded keeps contiguous slices
    and no source-id matching, so its resume stays bit-exact."""
    slices = dist_hooks.recorded_slices(resumed) if resumed is not None else dist_hooks.RANK_SLICES[0]
    match_sources = resumed is None or resumed.get("clip_identity") == CLIP_IDENTITY
    data_cfg = dataclasses.replace(cfg, batch_size=dist_hooks.global_batch_size(cfg.batch_size))
    return dist_hooks.shard_train_data(TrainData(audio, captions, split, data_cfg, device, extras, match_sources),
                                       slices)


def _initial_weights(model: BiEncoder, cfg: TrainConfig, run_dir: Path, main: bool, progress: bool) -> None:
    """A fresh run's starting weights beyond random init: an audio checkpoint, then --init-from (a run or file)."""
    if cfg.audio_checkpoint:
        report = model.audio.load_checkpoint(cfg.audio_checkpoint)  # PANNs Cnn10 or PaSST, by the encoder
        _log(progress, f"audio checkpoint {cfg.audio_checkpoint}: {len(report['loaded'])} tensors loaded, "
                       f"{len(report['missing'])} missing, {len(report['mismatched'])} mismatched, "
                       f"{len(report['unexpected'])} unused")
    if cfg.init_from:
        from audioret.trainer.init_from import load_init_weights

        record = load_init_weights(model, cfg.init_from)
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            publish_json(run_dir / "init_from.json", record)
        _log(progress, f"initialised from {record.get('source', cfg.init_from)}")


def _start_or_restore(run: _Run, cache_root: Path, name: str, state: dict | None) -> _Tally:
    """Fresh run: record what it uses (run.json, config.toml, an empty metrics.csv). Resume: restore weights,
    optimiser, schedule, RNG states and the tally from the last checkpoint, and drop metrics rows after it."""
    run_dir, tally = run.run_dir, _Tally()
    metrics_path = run_dir / METRICS_CSV
    if state is None and run.main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        shared = run.data.duplicates.report() if run.data.duplicates else None  # trainer/source_ids.py
        publish_json(run_dir / RUN_INFO, {"cache_root": str(cache_root.resolve()), "name": name,
                                          "audio_key": run.audio.key, "caption_key": run.captions.key,
                                          "audio_dir": str(run.audio.directory),
                                          "caption_dir": str(run.captions.directory),
                                          "extras": [s.record() for s in run.extras],
                                          "rank_slices": dist_hooks.RANK_SLICES[0], "clip_identity": CLIP_IDENTITY,
                                          **({"duplicate_clips": shared} if shared else {})})
        save_config(run.cfg, run_dir / "config.toml")
        rewrite_metrics(metrics_path, 0)
    elif state is not None:
        load_model_state(run.model, state, checkpoint_path(run_dir, "last"))
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        warning = restore_rank_rng(state, {"augment": run.generator}, dist_hooks.get_rank(),
                                   dist_hooks.get_world_size(), run.cfg.seed, int(state["epoch"]))
        if warning and run.main:
            print(f"{run_dir}: {warning}", file=sys.stderr, flush=True)
        tally = _Tally(float(state["best_map10"]), int(state["best_epoch"]), int(state["bad_epochs"]),
                       int(state["epoch"]) + 1)
        if run.main:
            save_config(run.cfg, run_dir / "config.toml")
            rewrite_metrics(metrics_path, int(state["epoch"]))
        _log(run.progress, f"resuming {run_dir} after epoch {state['epoch']} "
                           f"(best mAP@10 {tally.best:.4f} @ {tally.best_epoch})")
    if run.main:
        register_caches(cache_root, run_dir, run.data.sources)
    return tally


def _run_epochs(run: _Run, tally: _Tally, ddp_model: torch.nn.Module, frozen_text: dict | None,
                writer: Any) -> tuple[int, bool]:
    """Train, validate, log, checkpoint, stop early; returns (last epoch run, stopped early)."""
    cfg = run.cfg
    epoch, stopped = tally.start_epoch - 1, False
    for epoch in range(tally.start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        stats = train_epoch(ddp_model, run.data, run.optimizer, cfg, epoch, run.generator, run.device, run.progress,
                            run.scheduler)
        val = dist_hooks.broadcast_object(score_split(run.model, run.audio, run.captions, run.val_split, run.device,
                                                      cfg.eval_batch_size).metrics if run.main else None)
        run.scheduler.after_epoch()
        row = {"epoch": epoch, "loss": f"{stats['loss']:.6f}", "val_map10": f"{val['map10']:.6f}",
               "val_r1": f"{val['r1']:.6f}", "val_r5": f"{val['r5']:.6f}", "val_r10": f"{val['r10']:.6f}",
               "lr": f"{lr:.3e}", "seconds": f"{time.perf_counter() - t0:.2f}",
               "data_wait_share": f"{stats['data_wait_share']:.4f}"}
        improved = val["map10"] > tally.best
        if improved:
            tally.best, tally.best_epoch, tally.bad_epochs = val["map10"], epoch, 0
        else:
            tally.bad_epochs += 1
        stopped = cfg.patience > 0 and tally.bad_epochs >= cfg.patience
        _record_epoch(run, tally, row, val, improved, stopped, frozen_text, writer)
        _log(run.progress, f"epoch {epoch}/{cfg.epochs}  loss {stats['loss']:.4f}  val mAP@10 {val['map10']:.4f}  "
                           f"R@1 {val['r1']:.3f}  best {tally.best:.4f} @{tally.best_epoch}  {row['seconds']} s  "
                           f"data wait {100 * stats['data_wait_share']:.1f}%")
        if stopped:
            _log(run.progress, f"early stop: no better validation mAP@10 for {cfg.patience} epochs")
            break
    return epoch, stopped


def _record_epoch(run: _Run, tally: _Tally, row: dict, val: dict, improved: bool, stopped: bool,
                  frozen_text: dict | None, writer: Any) -> None:
    """One epoch's metrics row, checkpoints (best.pt when it improved; last.pt, with the training state unless the
    run ends here without keep_last) and TensorBoard scalars. Every rank gathers RNG states; rank 0 writes."""
    cfg, epoch, last_path = run.cfg, row["epoch"], checkpoint_path(run.run_dir, "last")
    rng_ranks = gather_rank_rng({"augment": run.generator})  # every rank's states (a collective)
    run_state = {"epoch": epoch, "config": cfg.to_dict(), "best_map10": tally.best, "best_epoch": tally.best_epoch,
                 "bad_epochs": tally.bad_epochs, "val": val, "stopped": stopped, "frozen_text": frozen_text}
    if run.main:
        append_metrics_row(run.run_dir / METRICS_CSV, row)  # before the checkpoint (trainer/metrics_log.py)
        weights = model_weights(run.model, frozen_text)
        if improved:  # weights only: optimiser state serves a resume, and that reads last.pt
            save_checkpoint(checkpoint_path(run.run_dir, "best"), {"model": weights, **run_state})
        if (stopped or epoch == cfg.epochs) and not cfg.keep_last:
            save_checkpoint(last_path, finished_state(run_state))  # the run ends here: no weights kept
        else:
            save_checkpoint(last_path, {"model": weights, "optimizer": run.optimizer.state_dict(),
                                        "scheduler": run.scheduler.state_dict(), "rng": rng_ranks[0],
                                        "rng_ranks": rng_ranks, **run_state})
    write_scalars(writer, row, epoch)

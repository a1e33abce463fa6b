"""A run's per-epoch log: RUN_DIR/metrics.csv, one row per epoch, and TensorBoard events when tensorboard is
installed.

Why the row goes in before the epoch's checkpoint: a kill in between redoes the epoch on resume, and the resume
first drops every row after the checkpoint's epoch (`rewrite_metrics`), so the file always ends up with exactly
the rows an uninterrupted run writes.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from audioret.cache.publish import publish_file

METRICS_CSV = "metrics.csv"
METRIC_FIELDS = ["epoch", "loss", "val_map10", "val_r1", "val_r5", "val_r10", "lr", "seconds", "data_wait_share"]
SCALARS = ("loss", "val_map10", "val_r1", "val_r5", "val_r10", "lr", "data_wait_share")  # to TensorBoard


def tensorboard_writer(run_dir: Path) -> Any:
    """A SummaryWriter into RUN_DIR/tb, or None without tensorboard (optional; metrics.csv always exists)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tb"))


def rewrite_metrics(path: Path, keep_until: int) -> None:
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


def append_metrics_row(path: Path, row: dict) -> None:
    """One epoch's row at the end of metrics.csv (before the epoch's checkpoint: see the module docstring)."""
    with open(path, "a", newline="", encoding="utf-8") as f:
        csv.DictWriter(f, METRIC_FIELDS).writerow(row)


def write_scalars(writer: Any, row: dict, epoch: int) -> None:
    """One epoch's scalars to TensorBoard (`writer` None: nothing)."""
    if writer is None:
        return
    for k in SCALARS:
        writer.add_scalar(k, float(row[k]), epoch)
    writer.flush()

"""The PNG figures of `audioret report`: training curves, the histogram of the correct clip's rank, log-mel images.

Why files and the Agg backend: the report is a static folder that opens from disk (no server, no JavaScript), and
it is built on machines without a display. Every function writes one PNG and returns its path.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a run's metrics.csv as floats (empty cells dropped); [] when the file is missing or empty."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                try:
                    parsed[k] = float(v)
                except (TypeError, ValueError):
                    continue
            if "epoch" in parsed:
                rows.append(parsed)
    return rows


def training_curves(rows: Sequence[dict[str, float]], out: Path, labels: dict[str, str]) -> Path:
    """Loss (left) and every validation metric column `val_*` (right) against the epoch."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    if any("loss" in r for r in rows):
        ax_loss.plot(epochs, [r.get("loss", math.nan) for r in rows], marker="o", ms=3, color="tab:red")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    val_keys = list(dict.fromkeys(k for r in rows for k in r if k.startswith("val_")))  # metrics.csv's order
    for key in val_keys:
        ax_val.plot(epochs, [r.get(key, math.nan) for r in rows], marker="o", ms=3,
                    label=labels.get(key[4:], key[4:]))
    ax_val.set(xlabel="epoch", ylabel="validation", title="validation metrics")
    if val_keys:
        ax_val.legend(fontsize=8, loc="best")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def rank_histogram(ranks: np.ndarray, n_clips: int, out: Path) -> Path:
    """How many captions put their correct clip at each rank: one bar per rank up to 100 clips, log bins above."""
    plt = _pyplot()
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig, ax = plt.subplots(figsize=(9, 3.0), dpi=100)
    if n_clips <= 100:
        bins = np.arange(0.5, n_clips + 1.5)
    else:
        bins = np.unique(np.round(np.geomspace(1, n_clips + 1, 40))) - 0.5
        ax.set_xscale("log")
        ticks = [t * 10 ** e for e in range(7) for t in (1, 2, 5) if t * 10 ** e <= n_clips]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
    ax.hist(ranks, bins=bins, color="tab:blue", edgecolor="white", linewidth=0.5)
    for k in (1, 5, 10):
        if k < n_clips:
            ax.axvline(k + 0.5, color="grey", linestyle=":", linewidth=1)
            ax.text(k + 0.5, ax.get_ylim()[1] * 0.95, f" R@{k}", fontsize=8, color="grey", va="top")
    ax.set(xlabel=f"rank of the correct clip (1 = best, {n_clips} clips)", ylabel="captions",
           title=f"rank of the correct clip over {len(ranks)} captions")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def log_mel_image(features: np.ndarray, out: Path, max_columns: int = 400) -> Path:
    """A (frames, bins) feature matrix as a small image, low bins at the bottom: a dB log-mel shows its top 80 dB,
    other scales (e.g. PaSST's normalised mel) their 1st–100th percentile. Long clips are averaged over blocks of
    frames down to at most `max_columns` columns, so each file stays small."""
    plt = _pyplot()
    mel = np.asarray(features, dtype=np.float32)
    step = max(1, math.ceil(mel.shape[0] / max_columns))
    if step > 1:
        usable = mel.shape[0] // step * step
        mel = mel[:usable].reshape(-1, step, mel.shape[1]).mean(axis=1)
    mel = mel.T[::-1]
    top = float(mel.max()) if mel.size else 0.0
    low = float(np.percentile(mel, 1)) if mel.size else 0.0
    plt.imsave(out, mel, cmap="magma", vmin=max(low, top - 80.0), vmax=top)
    return out

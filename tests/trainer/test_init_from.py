"""--init-from: weights copied exactly from a source run's best checkpoint; mismatches are one-line errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from audioret.trainer.init_from import InitFromError, load_init_weights


def _model(width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(3, width), nn.BatchNorm1d(width), nn.Linear(width, 2))


def _save_run(run: Path, model: nn.Module, name: str = "best") -> Path:
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    path = run / "checkpoints" / f"{name}.pt"
    torch.save({"model": model.state_dict(), "epoch": 7, "best_map10": 0.25}, path)
    return path


def test_weights_copied_and_recorded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = _model()
    _save_run(tmp_path / "pre", src)
    torch.manual_seed(1)
    dst = _model()
    assert not torch.equal(dst[0].weight, src[0].weight)
    record = load_init_weights(dst, tmp_path / "pre")
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    assert record["source_epoch"] == 7 and record["source_best_map10"] == 0.25
    assert record["init_from"] == str((tmp_path / "pre").resolve()) and len(record["sha256"]) == 64


def test_mismatch_and_missing_are_errors(tmp_path: Path) -> None:
    _save_run(tmp_path / "pre", _model(width=4))
    with pytest.raises(InitFromError, match=r"shape mismatch '0\.bias' \(\+\d+ more\)"):
        load_init_weights(_model(width=5), tmp_path / "pre")
    with pytest.raises(InitFromError, match="no checkpoints/best.pt"):
        load_init_weights(_model(), tmp_path / "nothing")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InitFromError, match="cannot load checkpoint"):
        load_init_weights(_model(), tmp_path / "junk.pt")

"""The clip-embedding cache is validated on load: broken files are discarded with a warning naming them, stale
ones (another checkpoint) silently, good ones served; cache locations follow XDG_CACHE_HOME."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from audioret.trainer.embedding_cache import load_embeddings, run_cache_dir, save_embeddings, user_cache_dir

IDS = ["a.wav", "b.wav", "c.wav"]


def good(tmp_path: Path) -> tuple[Path, torch.Tensor]:
    emb = torch.randn(3, 8)
    path = save_embeddings(tmp_path / "emb" / "x.pt", tmp_path / "fallback" / "x.pt", "tok1", IDS, emb)
    return path, emb


def test_valid_cache_is_served_and_stale_one_rebuilt_silently(tmp_path: Path, recwarn) -> None:
    path, emb = good(tmp_path)
    assert path == tmp_path / "emb" / "x.pt"
    assert torch.equal(load_embeddings(path, "tok1", IDS, 8), emb)
    assert load_embeddings(path, "tok2", IDS, 8) is None and path.exists()  # another checkpoint: stale
    assert not recwarn.list


@pytest.mark.parametrize("damage, problem", [
    (lambda p, e: p.write_bytes(b"garbage, not a torch file"), "unreadable"),
    (lambda p, e: p.write_bytes(p.read_bytes()[:200]), "unreadable"),  # truncated zip
    (lambda p, e: torch.save({"token": "tok1", "clip_ids": IDS, "emb": e.fill_(float("nan"))}, p), "NaN"),
    (lambda p, e: torch.save({"token": "tok1", "clip_ids": IDS, "emb": e[:2]}, p), "shape"),
    (lambda p, e: torch.save({"token": "tok1", "clip_ids": IDS[::-1], "emb": e}, p), "clip ids"),
    (lambda p, e: torch.save([1, 2], p), "keys"),
])
def test_broken_cache_warns_naming_the_file_and_is_removed(tmp_path: Path, damage, problem) -> None:
    path, emb = good(tmp_path)
    damage(path, emb)
    with pytest.warns(UserWarning, match=problem) as caught:
        assert load_embeddings(path, "tok1", IDS, 8) is None
    assert len(caught) == 1 and str(path) in str(caught[0].message) and "rebuilding" in str(caught[0].message)
    assert not path.exists()


def test_cache_locations_follow_xdg(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "audioret"
    a, b = run_cache_dir(tmp_path / "runs" / "base"), run_cache_dir(tmp_path / "other" / "base")
    assert a.parent == tmp_path / "xdg" / "audioret" / "runs" and a.name.startswith("base-") and a != b
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says: ignore relative values
    assert user_cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "audioret"

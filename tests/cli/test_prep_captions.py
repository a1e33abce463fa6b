"""`audioret prep captions` / `preview captions` end to end on a Clotho-layout fixture, in real subprocesses."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import pytest

from audioret.cache.caption_shards import CaptionCache
from audioret.cache.manifest import Manifest
from audioret.cache.shards import file_checksum
from audioret.cache.verify import verify_cache
from audioret.pipeline.text import normalise_caption
from support import AUDIO, run_cli
from support.dataset_layouts import CLOTHO_CAPTIONS, make_clotho
from support.translate_servers import GoogleLikeServer, build_tiny_marian


def fixture_rows() -> dict[str, list[str]]:
    with open(CLOTHO_CAPTIONS, newline="", encoding="utf-8") as f:
        return {r["file_name"]: [r[f"caption_{i}"] for i in range(1, 6)] for r in csv.DictReader(f)}


def test_prep_captions_none_end_to_end_and_rerun_noop(tmp_path: Path) -> None:
    root = make_clotho(tmp_path / "clotho", missing_audio=("Crowd applauding.wav",))
    cache = tmp_path / "cache"
    args = ("prep", "captions", "--dataset", "clotho", "--root", root, "--cache", cache, "--shard-size", "3")
    first = run_cli(*args)
    assert first.returncode == 3, first.stderr  # partial: a caption row without its audio is listed, not trained
    cache_dir = Path(first.stdout.strip().splitlines()[-1])
    assert "no back-translations" in first.stderr and "1 dataset row(s) skipped" in first.stderr
    cc = CaptionCache.open(cache, name="clotho")
    assert cc.directory == cache_dir and cc.backend == "none" and cc.pivots == []
    rows = fixture_rows()
    assert cc.clip_ids == sorted(set(rows) - {"Crowd applauding.wav"})
    for cid in cc.clip_ids:
        assert cc.raw(cid) == rows[cid]
        assert cc.captions(cid) == [normalise_caption(c) for c in rows[cid]]
        assert cc.back_translations(cid) == {}
    assert cc.ids_for_split("validation") == ["Dog barking at night.wav", "Waves on the beach.wav"]
    assert len(cc.all_captions("development")) == 20
    m = Manifest.read(cache_dir)
    assert m.complete and len(m.shards) == 3 and all(s.complete for s in m.shards)
    for s in m.shards:  # `cache verify` recomputes exactly this
        assert file_checksum(cache_dir / s.file) == s.sha256
        with h5py.File(cache_dir / s.file) as f:
            assert f.attrs["normalisation"] and f.attrs["backend"] == "none"
    problems = [json.loads(x) for x in (cache_dir / "failures.jsonl").read_text().splitlines()]
    assert problems[0]["error"] == "audio file missing"
    assert verify_cache(cache_dir) == []
    mtimes = {p: p.stat().st_mtime_ns for p in cache_dir.glob("shard-*.h5")}
    again = run_cli(*args)
    assert again.returncode == 3 and "nothing to do" in again.stderr and again.stdout.strip() == str(cache_dir)
    assert mtimes == {p: p.stat().st_mtime_ns for p in cache_dir.glob("shard-*.h5")}


def test_prep_captions_marian_cli_and_preview(tmp_path: Path) -> None:
    # 16 positions: each translation at most 15 decoding steps (the default 64 took most of this test's time)
    model = build_tiny_marian(tmp_path / "opus-mt-tiny", positions=16)
    root = make_clotho(tmp_path / "clotho")
    cache = tmp_path / "cache"
    args = ("prep", "captions", "--dataset", "clotho", "--root", root, "--cache", cache, "--name", "demo",
            "--translator", "marian", "--marian-model-template", model, "--pivots", "de,es", "--device", "cpu",
            "--batch-size", "16")
    first = run_cli(*args, check=True)
    assert "captions/s" in first.stderr  # tqdm progress in captions per second
    cc = CaptionCache.open(cache, name="demo")
    assert cc.backend == "marian" and cc.pivots == ["de", "es"]
    assert cc.config["models"]["de"] == [str(model), str(model)]
    for cid in cc.clip_ids:
        bts = cc.back_translations(cid)
        assert set(bts) == {"de", "es"} and all(len(v) == len(cc.captions(cid)) for v in bts.values())
        assert all(t == normalise_caption(t) and t for v in bts.values() for t in v)
    again = run_cli(*args, check=True)
    assert "nothing to do" in again.stderr
    shown = run_cli("preview", "captions", "--cache", cache, "--name", "demo", "-n", "2", "--seed", "1",
                    "--set", "p_eda=1", "--set", "p_syn=0", "--set", "p_bt=0.5", check=True)
    assert shown.stdout.count("raw:") == 10 and "bt de:" in shown.stdout and "aug:" in shown.stdout
    assert verify_cache(cc.directory) == []
    with h5py.File(cc.directory / "shard-00000.h5", "a") as f:  # a foreign edit: verify must notice
        del f["bt_es"]
    assert any("bt_es missing" in p for p in verify_cache(cc.directory))
    bad = run_cli("preview", "captions", "--cache", cache, "--set", "p_foo=1")
    assert bad.returncode == 2 and "p_foo" in bad.stderr


def test_prep_captions_partial_failure_exit_3_then_retry(tmp_path: Path) -> None:
    root = make_clotho(tmp_path / "clotho")
    cache = tmp_path / "cache"
    text = fixture_rows()["Waves on the beach.wav"][2]
    with GoogleLikeServer() as srv:
        srv.fail_texts = {text}
        args = ("prep", "captions", "--dataset", "clotho", "--root", root, "--cache", cache, "--translator",
                "google", "--pivots", "fr", "--google-rps", "0", "--google-url", srv.url, "--no-progress")
        first = run_cli(*args)
        assert first.returncode == 3, first.stderr
        cache_dir = Path(first.stdout.strip().splitlines()[-1])
        fails = [json.loads(x) for x in (cache_dir / "failures.jsonl").read_text().splitlines()]
        assert [(f["clip_id"], f["caption_index"], f["pivot"], f["stage"]) for f in fails] == [
            ("Waves on the beach.wav", 2, "fr", "forward")]
        cc = CaptionCache(cache_dir)  # usable: the failed one falls back to the original caption
        assert cc.back_translations("Waves on the beach.wav")["fr"][2] == cc.captions("Waves on the beach.wav")[2]
        answered = sum(srv.answered.values())
        srv.fail_texts = set()
        second = run_cli(*args)
        assert second.returncode == 0, second.stderr
        assert sum(srv.answered.values()) == answered + 2  # only the failed text: forward + backward
        assert (cache_dir / "failures.jsonl").read_text() == ""
        assert CaptionCache(cache_dir).back_translations("Waves on the beach.wav")["fr"][2].endswith("fr back")


@pytest.mark.parametrize("argv, message", [
    (("--translator", "google", "--pivots", ""), "at least one pivot"),
    (("--pivots", "en,de"), "must differ"),
])
def test_prep_captions_usage_errors(tmp_path: Path, argv: tuple, message: str) -> None:
    root = make_clotho(tmp_path / "clotho")
    proc = run_cli("prep", "captions", "--dataset", "clotho", "--root", root, "--cache", tmp_path / "c", *argv)
    assert proc.returncode == 2 and message in proc.stderr


def test_preview_captions_shows_the_form_the_config_trains_on(tmp_path: Path) -> None:
    """`preview captions --config` (or `--set text_normalisation=`) shows the caption as that config's model reads
    it: the cache's normalised form for audioret, the DCASE 2025 baseline's form for dcase2025 (which keeps
    "highpitched" in one piece and the spaces around a deleted comma)."""
    from audioret.trainer.caption_text import dcase2025_text
    from support import REPO, write_csv

    shutil.copyfile(AUDIO / "animals_cc0" / "dog.mp3", tmp_path / "dog.mp3")
    raw = ["A high-pitched whistle, then a dog's bark!", "Rain falls , hard."]
    manifest = write_csv(tmp_path / "clips.csv", ["split", "file_name", "caption_1", "caption_2"],
                         [["development", "dog.mp3", *raw]])
    cache = tmp_path / "cache"
    run_cli("prep", "captions", "--dataset", "manifest", "--manifest", manifest, "--cache", cache,
            "--translator", "none", check=True)
    d25 = [dcase2025_text(t) for t in raw]
    assert d25 == ["a highpitched whistle then a dogs bark", "rain falls  hard"]
    assert all(normalise_caption(t) != d for t, d in zip(raw, d25, strict=False))
    preview = ("preview", "captions", "--cache", cache, "--draws", "1")
    default = run_cli(*preview, "--set", "p_eda=0", check=True).stdout
    assert "text_normalisation=audioret" in default and "dcase2025:" not in default
    assert [f"norm: {normalise_caption(t)}" in default for t in raw] == [True, True]
    recipe = run_cli(*preview, "--config", REPO / "configs" / "dcase2025_baseline.toml", check=True).stdout
    assert "text_normalisation=dcase2025" in recipe and "norm:" not in recipe
    for form in d25:  # the recipe has no text augmentation: the draw is the form itself
        assert f"dcase2025: {form}\n" in recipe and f"aug:  {form}\n" in recipe
    assert run_cli(*preview, "--set", "text_normalisation=dcase2025", check=True).stdout.count("dcase2025: ") == 2
    bad = run_cli(*preview, "--set", "text_normalisation=lower")
    assert bad.returncode == 2 and "text_normalisation is one of audioret, dcase2025" in bad.stderr
    missing = run_cli(*preview, "--config", tmp_path / "none.toml")
    assert missing.returncode == 2 and "none.toml" in missing.stderr

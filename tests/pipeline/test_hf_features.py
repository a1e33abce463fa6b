"""Hugging Face feature extractors as cached features (pipeline/hf_features.py): what is cached is exactly what
the extractor itself computes per clip, and its own batch output follows from it by the recorded batch-time steps.

Extractors are built from their classes and saved to a temp folder (no hub), then loaded by path as a user would
load `hf:<name>`."""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from audioret.cache.audio_shards import AudioCache
from audioret.pipeline.audio_io import load_mono
from audioret.pipeline.feature_defs import FeatureSpecError, feature_definition
from audioret.pipeline.prep_audio import prep_audio
from support import AUDIO, run_cli
from support.prep import write_manifest

CLIPS = [AUDIO / "animals_cc0" / "cow.mp3", AUDIO / "sonic_pi_cc0" / "loop_amen.flac",
         AUDIO / "fsdd_ccbysa" / "5_george_0.wav"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    from transformers import ASTFeatureExtractor, ClapFeatureExtractor

    root = tmp_path_factory.mktemp("extractors")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ASTFeatureExtractor().save_pretrained(root / "ast")
        ASTFeatureExtractor(max_length=100).save_pretrained(root / "ast-short")
    ClapFeatureExtractor(max_length_s=1).save_pretrained(root / "clap")  # 1 s: the bundled clips are "long"
    ClapFeatureExtractor(max_length_s=1, truncation="rand_trunc").save_pretrained(root / "clap-trunc")
    return {p.name: p for p in root.iterdir()}


def f16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16)


@pytest.mark.parametrize("path", CLIPS, ids=lambda p: p.suffix)
def test_ast_caches_the_fbank_before_padding_and_normalisation(saved, path: Path) -> None:
    defn = feature_definition(f"hf:{saved['ast']}")
    ext = _extractor(saved["ast"])
    y = load_mono(path, defn)  # resampled to the extractor's 16 kHz
    cached = f16(defn.compute(y))
    n = 1 + (len(y) - 400) // 160
    assert cached.shape == (n, 128) and defn.sample_rate == 16000
    assert np.array_equal(cached, f16(ext._extract_fbank_features(y, max_length=n)))
    # The extractor's own output = pad with zeros to max_length, then (x - mean) / (2 std): recorded as batch_time.
    out = ext(y, sampling_rate=16000, return_tensors="np")["input_values"][0]
    bt = defn.config["batch_time"]
    assert out.shape == (bt["pad_or_truncate_to_frames"], 128) and n < out.shape[0]
    norm = (cached.astype(np.float32) - bt["mean"]) / (2 * bt["std"])
    assert np.abs(norm - out[:n]).max() < 2e-3  # float16 storage: ≤ half a step at |x| < 16, / (2 std)
    assert np.allclose(out[n:], (0.0 - bt["mean"]) / (2 * bt["std"]))


def test_ast_truncation_happens_after_the_cache(saved) -> None:
    defn = feature_definition(f"hf:{saved['ast-short']}")
    y = load_mono(CLIPS[0], defn)
    cached = defn.compute(y)
    out = _extractor(saved["ast-short"])(y, sampling_rate=16000, return_tensors="np")["input_values"][0]
    assert cached.shape[0] > 100 == out.shape[0]
    assert np.allclose((cached[:100] - defn.config["batch_time"]["mean"]) / (2 * defn.config["batch_time"]["std"]),
                       out, atol=1e-5)


def test_clap_caches_the_whole_mel_before_fusion(saved) -> None:
    defn = feature_definition(f"hf:{saved['clap']}")
    ext = _extractor(saved["clap"])
    y = load_mono(CLIPS[0], defn)  # 48 kHz
    cached = defn.compute(y)
    assert cached.shape == (1 + len(y) // 480, 64) and defn.frames_per_second == 100.0
    assert np.array_equal(f16(cached), f16(ext._np_extract_fbank_features(y.astype(np.float64), ext.mel_filters)))
    # Fusion = a shrunk whole + three random crops of exactly this mel: every crop is a window of the cache.
    np.random.seed(3)
    fused = ext(y, sampling_rate=48000, return_tensors="np")
    assert bool(fused["is_longer"][0][0])
    frames = defn.config["batch_time"]["max_frames"]
    windows = np.lib.stride_tricks.sliding_window_view(cached, (frames, 64))[:, 0]
    for crop in fused["input_features"][0][1:]:
        assert crop.shape == (frames, 64)
        assert np.abs(windows - crop[None]).max(axis=(1, 2)).min() < 1e-4


def test_clap_rand_trunc_uses_its_slaney_filterbank(saved) -> None:
    defn = feature_definition(f"hf:{saved['clap-trunc']}")
    ext = _extractor(saved["clap-trunc"])
    y = load_mono(CLIPS[2], defn)
    assert defn.config["filterbank"] == "slaney"
    assert np.array_equal(f16(defn.compute(y)),
                          f16(ext._np_extract_fbank_features(y.astype(np.float64), ext.mel_filters_slaney)))


def test_long_clip_in_chunks_equals_one_call(saved, monkeypatch) -> None:
    import audioret.pipeline.hf_features as hf

    for name in ("ast", "clap"):
        defn = feature_definition(f"hf:{saved[name]}")
        y = load_mono(CLIPS[0], defn)
        whole = defn.compute(y)
        monkeypatch.setattr(hf, "CHUNK_FRAMES", 37)
        assert np.array_equal(defn.compute(y), whole), name
        monkeypatch.setattr(hf, "CHUNK_FRAMES", 6000)


def test_prep_audio_caches_the_extractor_output_under_its_own_key(saved, tmp_path: Path) -> None:
    for path in CLIPS:
        shutil.copy(path, tmp_path / path.name)
    man = write_manifest(tmp_path / "clips.csv", [tmp_path / p.name for p in CLIPS])
    ast = prep_audio("manifest", tmp_path, tmp_path / "cache", manifest=man, workers=1, progress=False,
                     features=f"hf:{saved['ast']}")
    panns = prep_audio("manifest", tmp_path, tmp_path / "cache", manifest=man, workers=1, progress=False)
    assert ast.key != panns.key and not ast.failures
    cache, defn = AudioCache(ast.cache_dir), feature_definition(f"hf:{saved['ast']}")
    assert cache.config["feature"] == f"hf:{saved['ast']}" and cache.n_mels == 128
    ext = _extractor(saved["ast"])
    for path in CLIPS:
        y = load_mono(path, defn)
        want = f16(ext._extract_fbank_features(y, max_length=1 + (len(y) - 400) // 160))
        assert np.array_equal(np.asarray(cache.get(path.name)), want), path.name
        assert cache.durations[cache.index_of(path.name)] == pytest.approx(len(y) / 16000)


def test_the_cache_key_is_the_extractor_not_how_its_name_was_typed(saved, tmp_path: Path) -> None:
    """`prep audio --features hf:<folder>` keys its cache by the extractor's class and resolved settings: a trailing
    slash or a relative spelling of the folder finds the same cache (nothing decoded again), a folder whose
    extractor keeps only 2–6 kHz gets its own. The first spelling stays recorded as the feature's name."""
    from transformers import ClapFeatureExtractor

    shutil.copy(CLIPS[2], tmp_path / CLIPS[2].name)
    man = write_manifest(tmp_path / "clips.csv", [tmp_path / CLIPS[2].name])
    prep = ("prep", "audio", "--dataset", "manifest", "--manifest", man, "--cache", tmp_path / "cache",
            "--workers", "1", "--no-progress", "--features")
    clap = saved["clap"]
    first = run_cli(*prep, f"hf:{clap}", check=True)
    for spelling, cwd in ((f"hf:{clap}/", None), (f"hf:{clap.name}", clap.parent), (f"hf:./{clap.name}/", clap.parent)):
        again = run_cli(*prep, spelling, cwd=cwd, check=True)
        assert again.stdout == first.stdout and "nothing to do" in again.stderr, spelling
    assert AudioCache(first.stdout.strip()).config["feature"] == f"hf:{clap}"
    ClapFeatureExtractor(max_length_s=1, frequency_min=2000, frequency_max=6000).save_pretrained(tmp_path / "clap")
    narrow = run_cli(*prep, "hf:clap", cwd=tmp_path, check=True)
    assert narrow.stdout != first.stdout and "nothing to do" not in narrow.stderr


@pytest.mark.parametrize("features, key", [
    ("panns", "281ba8eb5ba934102bf9952d9054ba9a08707751aed898a7b0adad0d8df5fa11"),
    ("passt", "663ebd9ed84a4e798b546d050311432e23b6191be98a4e08194d0efe4fb4ac21"),
])
def test_panns_and_passt_cache_keys_are_unchanged(features: str, key: str, tmp_path: Path) -> None:
    """The hf: key change leaves every other definition's key as it was: the key of a fixed source list under
    the same decoder versions, pinned, and equal to the formula over the whole cache config."""
    from audioret.cache.keys import cache_key
    from audioret.pipeline import prep_audio as prep
    from audioret.pipeline.datasets import ClipRecord

    defn = feature_definition(features)
    assert defn.key_config() == defn.cache_config()
    assert cache_key("audio", defn.key_config(), defn.version, {}, [{"clip": "a.wav"}]) == key
    clip = tmp_path / "a.wav"
    shutil.copy(CLIPS[2], clip)
    os.utime(clip, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    records = [ClipRecord("a.wav", "development", clip)]
    sources = [{**prep.source_fingerprint(clip, tmp_path), "clip_id": "a.wav", "split": "development"},
               {"dataset": "manifest", "name": "x"}]
    assert prep.compute_key(records, tmp_path, "manifest", "x", features=features) == \
        cache_key("audio", defn.cache_config(), defn.version, prep._audio_versions(defn), sources)


def test_unusable_extractors_are_refused_in_one_line(tmp_path: Path) -> None:
    from transformers import WhisperFeatureExtractor

    WhisperFeatureExtractor().save_pretrained(tmp_path / "whisper")
    with pytest.raises(FeatureSpecError, match="WhisperFeatureExtractor is not supported; supported: AST"):
        feature_definition(f"hf:{tmp_path / 'whisper'}")
    with pytest.raises(FeatureSpecError, match="nothing here: folder not found$"):
        feature_definition(f"hf:{tmp_path / 'nothing here'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatureSpecError, match="cannot load a feature extractor") as err:
        feature_definition(f"hf:{tmp_path / 'empty'}")
    assert "\n" not in str(err.value)


def _extractor(path: Path):
    from transformers import AutoFeatureExtractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return AutoFeatureExtractor.from_pretrained(path)

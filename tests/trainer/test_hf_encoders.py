"""Hugging Face audio encoders (trainer/encoders/hf.py, hf_inputs.py) against transformers itself, on real clips:
the encoder's output on cached features equals the transformers model called on its extractor's own output for
the same audio, and the feature spec the trainer derives is the one `prep audio --features hf:<name>` records.

Models are tiny random ones saved locally (tests/support/hf_models.py) and loaded by path, as `hf:<path>`."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from audioret.cache.audio_shards import AudioCache
from audioret.pipeline.audio_io import load_mono
from audioret.pipeline.feature_defs import feature_definition
from audioret.pipeline.prep_audio import prep_audio
from audioret.trainer.config import ConfigError, TrainConfig, check_audio_checkpoint
from audioret.trainer.encoders.hf import build_hf_audio_encoder, hf_feature_spec, load_feature_extractor
from audioret.trainer.encoders.hf_inputs import fusion_thirds
from audioret.trainer.encoders.loading import ModelLoadError
from audioret.trainer.sources import check_audio_config
from support import AUDIO
from support.hf_models import tiny_ast, tiny_clap
from support.prep import write_manifest

# 6 s and 1.75 s: longer than the tiny models' inputs (2 s AST, 1 s CLAP) / 0.56 s and 0.92 s: shorter.
CLIPS = [AUDIO / "animals_cc0" / "cow.mp3", AUDIO / "sonic_pi_cc0" / "loop_amen.flac",
         AUDIO / "fsdd_ccbysa" / "5_george_0.wav", AUDIO / "animals_cc0" / "sheep.mp3"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-models")
    return {"ast": tiny_ast(root / "ast"), "clap": tiny_clap(root / "clap"),
            "clap-trunc": tiny_clap(root / "clap-trunc", fused=False)}


def encoder(path: Path, embed_dim: int = 8):
    cfg = SimpleNamespace(audio_encoder=f"hf:{path}", embed_dim=embed_dim, projection="linear")
    return build_hf_audio_encoder(cfg, hf_feature_spec(str(path)).n_mels).eval()


def batch(features: list[np.ndarray], floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached features padded after their lengths with the feature's floor, as trainer/data.py pads them."""
    lengths = torch.tensor([len(f) for f in features])
    x = torch.full((len(features), int(lengths.max()), features[0].shape[1]), floor)
    for i, f in enumerate(features):
        x[i, :len(f)] = torch.from_numpy(np.asarray(f, dtype=np.float32))
    return x, lengths


def real_cache(path: Path, folder: Path) -> list[np.ndarray]:
    """The clips through `prep audio --features hf:<path>` (float16 shards), in CLIPS order."""
    for clip in CLIPS:
        shutil.copy(clip, folder / clip.name)
    manifest = write_manifest(folder / "clips.csv", [folder / c.name for c in CLIPS])
    done = prep_audio("manifest", folder, folder / "cache", manifest=manifest, workers=1, progress=False,
                      features=f"hf:{path}")
    cache = AudioCache(done.cache_dir)
    return [np.asarray(cache.get(c.name), dtype=np.float32) for c in CLIPS]


@pytest.mark.parametrize("kind", ["ast", "clap", "clap-trunc"])
def test_feature_spec_is_what_prep_audio_records(models, kind: str) -> None:
    spec = hf_feature_spec(str(models[kind]))
    recorded = feature_definition(f"hf:{models[kind]}").cache_config()
    assert spec.feature == spec.features_option == recorded["feature"] == f"hf:{models[kind]}"
    assert spec.numbers() == {k: recorded[k] for k in ("n_mels", "sample_rate", "hop_length")}
    assert spec.extractor == {k: recorded[k] for k in ("extractor_class", "extractor_settings")}
    assert check_audio_config(recorded, "cache", f"hf:{models[kind]}") == 100.0  # frames per second


@pytest.mark.parametrize("kind", ["ast", "clap"])
def test_scale_is_the_cached_silence_and_the_gain_per_db(models, kind: str) -> None:
    defn, scale = feature_definition(f"hf:{models[kind]}"), hf_feature_spec(str(models[kind])).scale
    silent = defn.compute(np.zeros(defn.sample_rate, dtype=np.float32)).astype(np.float16)
    assert np.all(silent == np.float16(scale.floor))  # what the float16 cache holds for digital silence
    y = load_mono(CLIPS[0], defn)
    base, louder = defn.compute(y), defn.compute(y * np.float32(10 ** (6 / 20)))  # +6 dB
    audible = base > scale.floor + 2
    assert audible.mean() > 0.5
    assert np.abs((louder - base)[audible] - 6 * scale.per_db).max() < 2e-3


def test_ast_equals_ast_model_on_the_extractor_output(models, tmp_path: Path) -> None:
    enc, ext = encoder(models["ast"]), load_feature_extractor(str(models["ast"]))
    defn = feature_definition(f"hf:{models['ast']}")
    waves = [load_mono(c, defn) for c in CLIPS]
    reference_input = torch.from_numpy(ext(waves, sampling_rate=16000, return_tensors="np")["input_values"])
    with torch.no_grad():
        reference = enc.proj(enc.model(input_values=reference_input).pooler_output)
        x, lengths = batch([defn.compute(w) for w in waves], enc.scale.floor)
        assert torch.equal(enc.batching(x, lengths), reference_input)  # pad/truncate + normalise: exact
        assert torch.equal(enc(x, lengths), reference)
        cached = enc(*batch(real_cache(models["ast"], tmp_path), enc.scale.floor))
    assert (cached - reference).abs().max() < 2e-3  # float16 storage only (measured 2.0e-4)


def numpy_fusion_draws(features: list[np.ndarray], chunk: int) -> torch.Tensor:
    """Replays ClapFeatureExtractor._random_mel_fusion's np.random.choice calls (same seed, same order) and
    returns them as the (B, 4) draws `ClapBatching` takes."""
    draws = torch.zeros(len(features), 4, dtype=torch.float64)
    for i, f in enumerate(features):
        if len(f) > chunk:
            for k, (lo, hi) in enumerate(fusion_thirds(len(f), chunk)):
                chosen = np.random.choice(np.arange(lo, hi + 1))
                draws[i, k] = (chosen - lo + 0.5) / (hi - lo + 1)
    return draws


def test_clap_fusion_equals_clap_on_the_extractor_output(models, tmp_path: Path) -> None:
    enc, ext = encoder(models["clap"]), load_feature_extractor(str(models["clap"]))
    defn = feature_definition(f"hf:{models['clap']}")
    waves = [load_mono(c, defn) for c in CLIPS]
    features = [defn.compute(w) for w in waves]
    np.random.seed(7)
    out = ext([w.astype(np.float64) for w in waves], sampling_rate=48000, return_tensors="pt")
    np.random.seed(7)
    draws = numpy_fusion_draws(features, enc.batching.chunk)
    x, lengths = batch(features, enc.scale.floor)
    ours, is_longer = enc.batching(x, lengths, draws=draws)
    assert is_longer.tolist() == out["is_longer"].tolist() == [[True], [True], [False], [False]]
    reference = out["input_features"].float()
    assert (ours[:2] - reference[:2]).abs().max() < 1e-4  # shrink + three crops of the cached mel
    # Short clips: the extractor repeats the waveform; frames of the first copy away from its end are exact.
    for i in (2, 3):
        first_copy = (len(waves[i]) - ext.fft_window_size // 2) // ext.hop_length + 1
        assert (ours[i, :, :first_copy] - reference[i, :, :first_copy]).abs().max() < 1e-4
    with torch.no_grad():
        mine = enc.proj(enc.model(input_features=ours, is_longer=is_longer).audio_embeds)
        theirs = enc.proj(enc.model(input_features=reference, is_longer=out["is_longer"]).audio_embeds)
        assert (mine[:2] - theirs[:2]).abs().max() < 1e-5
        assert (mine - theirs).abs().max() < 1e-3  # measured 9.1e-5: the seam frames of 5_george_0
        cached_input, _ = enc.batching(*batch(real_cache(models["clap"], tmp_path), enc.scale.floor), draws=draws)
        cached = enc.proj(enc.model(input_features=cached_input, is_longer=is_longer).audio_embeds)
    assert (cached[:2] - theirs[:2]).abs().max() < 2e-3  # float16 storage only


def test_clap_eval_is_deterministic_and_training_draws_from_the_generator(models) -> None:
    enc = encoder(models["clap"])
    defn = feature_definition(f"hf:{models['clap']}")
    x, lengths = batch([defn.compute(load_mono(c, defn)) for c in CLIPS], enc.scale.floor)
    with torch.no_grad():
        assert torch.equal(enc(x, lengths), enc(x[[1, 0, 2, 3]], lengths[[1, 0, 2, 3]])[[1, 0, 2, 3]])
    middle, _ = enc.batching(x, lengths)
    lo, hi = fusion_thirds(int(lengths[0]), enc.batching.chunk)[1]
    assert torch.equal(middle[0, 2], x[0, (lo + hi) // 2:(lo + hi) // 2 + enc.batching.chunk])

    def drawn(seed: int, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return enc.batching(x[rows], lengths[rows], torch.Generator().manual_seed(seed), training=True)

    assert torch.equal(drawn(1, [0, 1])[0], drawn(1, [0, 1])[0])
    assert not torch.equal(drawn(1, [0, 1])[0], drawn(2, [0, 1])[0])
    assert drawn(1, [0, 1])[1].all()
    # A batch of short clips only: as the extractor does, one clip drawn at random is marked longer (training).
    marked = {tuple(drawn(seed, [2, 3])[1].flatten().tolist()) for seed in range(12)}
    assert marked == {(True, False), (False, True)}
    assert not enc.batching(x[[2, 3]], lengths[[2, 3]])[1].any()


def test_clap_is_longer_at_10_s_follows_the_extractor(tmp_path: Path) -> None:
    """The extractor's rule, in samples: "longer" needs more than max_length_s · rate samples and, with fusion, a
    mel longer than its chunk (1 + n // hop > 1 + max // hop frames), so clips of 10.000–10.009 s at 48 kHz are their
    own mel four times, not longer; 10.010 s is. In one batch with a 12-s clip (the extractor then draws no
    stand-in) input, is_longer and embedding equal the extractor's. Alone, the extractor marks such a clip longer
    at random and evaluation does not (docs/training.md): that is the one difference, and it moves the embedding."""
    model = tiny_clap(tmp_path / "clap-10s", max_length_s=10)
    enc, ext = encoder(model), load_feature_extractor(str(model))
    defn = feature_definition(f"hf:{model}")
    real = load_mono(CLIPS[0], defn)  # a real 6-s clip, repeated to the lengths under test
    seconds = [10.000, 10.002, 10.004, 10.010, 12.0]
    waves = [np.tile(real, 3)[:round(s * 48000)] for s in seconds]
    features = [defn.compute(w) for w in waves]
    assert [len(f) for f in features] == [1001, 1001, 1001, 1002, 1201] and enc.batching.chunk == 1001
    np.random.seed(3)
    out = ext([w.astype(np.float64) for w in waves], sampling_rate=48000, return_tensors="pt")
    np.random.seed(3)
    draws = numpy_fusion_draws(features, enc.batching.chunk)
    x, lengths = batch(features, enc.scale.floor)
    ours, is_longer = enc.batching(x, lengths, draws=draws)
    assert is_longer.flatten().tolist() == out["is_longer"].flatten().tolist() == [False, False, False, True, True]
    assert (ours - out["input_features"].float()).abs().max() < 1e-4
    with torch.no_grad():
        mine = enc.model(input_features=ours, is_longer=is_longer).audio_embeds
        theirs = enc.model(input_features=out["input_features"].float(), is_longer=out["is_longer"]).audio_embeds
        assert (mine - theirs).abs().max() < 1e-5
        for i in range(3):  # alone: the extractor's stand-in marks the clip longer, evaluation keeps it as it is
            alone = ext([waves[i].astype(np.float64)], sampling_rate=48000, return_tensors="pt")
            assert alone["is_longer"].tolist() == [[True]] and not enc.batching(x[i:i + 1], lengths[i:i + 1])[1].any()
            fused = enc.model(input_features=alone["input_features"].float(), is_longer=alone["is_longer"]).audio_embeds
            assert (fused - mine[i]).norm() > 0.1 * mine[i].norm()


def test_clap_rand_trunc_crops_the_cached_mel_at_a_frame(models) -> None:
    enc, ext = encoder(models["clap-trunc"]), load_feature_extractor(str(models["clap-trunc"]))
    defn = feature_definition(f"hf:{models['clap-trunc']}")
    wave = load_mono(CLIPS[0], defn)
    mel = torch.from_numpy(defn.compute(wave))
    chunk, hop, start = enc.batching.chunk, ext.hop_length, 123
    ours, longer = enc.batching.clip(mel, [(start + 0.5) / (len(mel) - chunk + 1)] * 3)
    crop = wave[start * hop:start * hop + ext.nb_max_samples].astype(np.float64)
    theirs = torch.from_numpy(ext._np_extract_fbank_features(crop, ext.mel_filters_slaney)).float()
    edge = ext.fft_window_size // 2 // hop + 1  # frames that reach past the crop: reflect-padded there
    assert longer and ours.shape == (1, chunk, 64) and theirs.shape == (chunk, 64)
    assert (ours[0, edge:-edge] - theirs[edge:-edge]).abs().max() < 1e-4
    centred, _ = enc.batching.clip(mel, None)
    assert torch.equal(centred[0], mel[(len(mel) - chunk) // 2:][:chunk])


def test_loading_errors_are_one_line_naming_the_model(models, tmp_path: Path) -> None:
    from transformers import ASTFeatureExtractor, WhisperFeatureExtractor

    WhisperFeatureExtractor().save_pretrained(tmp_path / "whisper")
    shutil.copytree(models["clap"], tmp_path / "ast-extractor-clap-model")
    (tmp_path / "ast-extractor-clap-model" / "preprocessor_config.json").unlink()
    (tmp_path / "ast-extractor-clap-model" / "processor_config.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its numpy filterbank warns of an all-zero filter
        ASTFeatureExtractor(max_length=200).save_pretrained(tmp_path / "ast-extractor-clap-model")
        ASTFeatureExtractor(max_length=200).save_pretrained(tmp_path / "no-weights")
    cases = {"nothing here": "folder not found", "whisper": "WhisperFeatureExtractor is not supported",
             "ast-extractor-clap-model": "a clap model with a ASTFeatureExtractor", "no-weights": "cannot load"}
    for folder, problem in cases.items():
        with pytest.raises(ModelLoadError) as err:
            encoder(tmp_path / folder)
        assert f"hf:{tmp_path / folder}" in str(err.value) and problem in str(err.value), str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="takes 128-bin features, the cache has 64"):
        build_hf_audio_encoder(SimpleNamespace(audio_encoder=f"hf:{models['ast']}", embed_dim=8,
                                               projection="linear"), 64)
    with pytest.raises(ConfigError, match="audio_checkpoint' does not apply"):
        check_audio_checkpoint(TrainConfig(audio_encoder=f"hf:{models['ast']}", audio_checkpoint="x.pth"))

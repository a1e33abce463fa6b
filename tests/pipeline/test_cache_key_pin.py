"""Audio cache keys stay what they were: the name, version and config of each feature definition, and the way
`prep audio` fingerprints a manifest, are pinned byte for byte (a changed key would orphan every existing cache).

The literals were taken from the code before the feature contract moved into cache/feature_contract.py."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from audioret.cache.keys import cache_key, canonical_json
from audioret.pipeline.audio_io import decoder_versions
from audioret.pipeline.datasets import load_records
from audioret.pipeline.feature_defs import feature_definition
from audioret.pipeline.prep_audio import compute_key

PANNS_CONFIG = ('{"amin":1e-10,"center":true,"dtype":"float16","feature":"panns-logmel","feature_version":"logmel-2",'
                '"fmax":14000.0,"fmin":50.0,"hop_length":320,"n_fft":1024,"n_mels":64,"pad_mode":"reflect",'
                '"resampler":"soxr_hq","sample_rate":32000,"win_length":1024,"window":"hann"}')
PASST_CONFIG = ('{"center":true,"dtype":"float16","feature":"passt-mel","feature_version":"passt-mel-1",'
                '"fmax":15000.0,"fmin":0.0,"hop_length":320,"log_offset":1e-05,"n_fft":1024,"n_mels":128,'
                '"norm_scale":5.0,"norm_shift":4.5,"pad_mode":"reflect","preemphasis":0.97,"resampler":"soxr_hq",'
                '"sample_rate":32000,"win_length":800,"window":"hann-symmetric"}')
PINNED = {  # spec: (name, version, canonical config, key over fixed versions and sources)
    "panns": ("panns-logmel", "logmel-2", PANNS_CONFIG,
              "b38eb66bddfc54d7e6bbc40729e86866be7b37962f02871dd9ce4a6d415947d8"),
    "passt": ("passt-mel", "passt-mel-1", PASST_CONFIG,
              "8e000ea3c5dafe530076e11c8ecc9a42807014eacd1b8d427d75c0aa0e0dce54"),
}
FIXED_SOURCES = [{"path": "a.wav", "size": 1, "mtime_ns": 2, "clip_id": "a.wav", "split": "development"},
                 {"dataset": "manifest", "name": "x"}]


@pytest.mark.parametrize("spec", sorted(PINNED))
def test_feature_definition_enters_the_key_as_pinned(spec: str) -> None:
    name, version, config, key = PINNED[spec]
    defn = feature_definition(spec)
    assert (defn.name, defn.version, defn.versions) == (name, version, {})
    assert canonical_json(defn.cache_config()) == config
    assert cache_key("audio", defn.cache_config(), defn.version, {"decoder": "pinned"}, FIXED_SOURCES) == key


@pytest.mark.parametrize("spec", sorted(PINNED))
def test_key_of_a_fixed_manifest(tmp_path: Path, spec: str) -> None:
    """compute_key over two files of fixed size and mtime: the pinned config, the decoder versions, one
    fingerprint per clip (with its id and split) and the dataset kind + name."""
    for i, (name, _split) in enumerate([("a.wav", "development"), ("b.flac", "val")]):
        path = tmp_path / name
        path.write_bytes(b"x" * (10 + i))
        os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000 + i))
    (tmp_path / "m.csv").write_text("split,file_name,caption_1\ndevelopment,a.wav,one\nval,b.flac,two\n",
                                    encoding="utf-8")
    records, problems = load_records("manifest", tmp_path, tmp_path / "m.csv")
    assert problems == []
    sources = [{"path": "a.wav", "size": 10, "mtime_ns": 1_700_000_000_000_000_000, "clip_id": "a.wav",
                "split": "development"},
               {"path": "b.flac", "size": 11, "mtime_ns": 1_700_000_000_000_000_001, "clip_id": "b.flac",
                "split": "val"},
               {"dataset": "manifest", "name": "pinned"}]
    _, version, config, _ = PINNED[spec]
    want = cache_key("audio", json.loads(config), version, decoder_versions(), sources)
    assert compute_key(records, tmp_path, "manifest", "pinned", features=spec) == want


HF_PINNED = {  # what an hf: definition records beyond the extractor's own settings (tiny extractors of hf_fixtures)
    "ast": '{"batch_time":{"mean":-4.2677393,"pad_or_truncate_to_frames":200,"pad_value":0.0,"std":4.5689974,'
           '"then_normalize":"(x - mean) / (2 * std)"},"cached":"per-clip fbank before padding and normalisation",'
           '"center":false,"extractor_class":"ASTFeatureExtractor","feature_version":"hf-features-1",'
           '"frame_length":400,"hop_length":160,"n_mels":128,"resampler":"soxr_hq","sample_rate":16000}',
    "clap": '{"batch_time":{"max_frames":101,"padding":"repeatpad","short_clips":"the extractor repeats the waveform '
            'before its mel; repeating frames approximates it","truncation":"fusion"},"cached":"per-clip log-mel '
            '(dB) before truncation and fusion","extractor_class":"ClapFeatureExtractor","feature_version":'
            '"hf-features-1","filterbank":"htk","hop_length":480,"n_mels":64,"resampler":"soxr_hq",'
            '"sample_rate":48000}',
}


@pytest.mark.parametrize("kind", sorted(HF_PINNED))
def test_hf_definition_records_what_it_recorded(tmp_path: Path, kind: str) -> None:
    from support.hf_models import tiny_ast, tiny_clap

    folder = (tiny_ast if kind == "ast" else tiny_clap)(tmp_path / kind)
    defn = feature_definition(f"hf:{folder}")
    config = defn.cache_config()
    assert (defn.name, defn.version, config["feature"], config["extractor"]) == \
        (f"hf:{folder}", "hf-features-1", f"hf:{folder}", str(folder))
    assert sorted(defn.versions) == ["torchaudio_path", "transformers"]
    rest = {k: v for k, v in config.items() if k not in ("extractor_settings", "extractor", "feature")}
    assert canonical_json(rest) == HF_PINNED[kind]

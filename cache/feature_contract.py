"""The stored feature format, written once: each cacheable feature's name and code version, the numbers its shapes
depend on (mel bins, sample rate, hop) and what its values mean (silence / padding value, gain per dB).

Why in cache/: what a shard's float16 frames hold is the cache's business, and pipeline/ (which writes them) and
trainer/ (which reads them) must agree without importing each other. Name and version enter every audio cache key
(tests/pipeline/test_cache_key_pin.py): bump the version when a definition's numbers change, never rename one. How the
numbers are computed stays in pipeline/.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLOOR_DB = -100.0  # 10·log10(1e-10): silence and padding of the dB log-mels (PANNs; CLAP's power_to_db)


@dataclass(frozen=True)
class FeatureScale:
    """Where silence sits in a cached feature and how far 1 dB of gain moves it.

    The PANNs log-mel is in dB with a −100 dB floor (gain g adds g). The PaSST mel is (ln(P + 1e-5) + 4.5) / 5, so
    gain g dB adds g·ln(10)/50 (exact above the 1e-5 offset, an approximation near it) and silence is
    (ln 1e-5 + 4.5) / 5 ≈ −1.40. Padding is written at `floor` and the gain never moves a value below it.
    """

    floor: float = FLOOR_DB
    per_db: float = 1.0


DB_SCALE = FeatureScale()
# Silence of the PaSST mel is (ln 1e-5 + 4.5) / 5 = −1.402585…, stored in the float16 shards as −1.40234375: the
# floor is the stored value, so silent cached frames are recognised as silence (never moved by the gain) and padding
# written in float16 (streamed batches) equals padding written in float32 (resident batches). Gain: ln 10 / 50 per
# dB.
PASST_SCALE = FeatureScale(floor=-1.40234375, per_db=0.04605170185988091)

AST_FRAME = 400  # 25 ms at 16 kHz, no centring: both of ASTFeatureExtractor's paths (numpy, torchaudio kaldi.fbank)
AST_HOP = 160  # 10 ms at 16 kHz, the same on both paths
AST_MEL_FLOOR = 1.192092955078125e-07  # float32 eps: the floor both paths put under the mel energies before ln
AST_SCALE = FeatureScale(floor=float(np.float16(math.log(AST_MEL_FLOOR))), per_db=math.log(10.0) / 10.0)
"""The cached AST fbank is ln(max(mel energy, eps)) of a power spectrum (cached before the extractor's
(x − mean) / (2·std), which the trainer applies in the encoder). Gain g dB scales power by 10^(g/10), so it adds
g·ln(10)/10 ≈ 0.2303 per dB (exact above the floor: DC removal, pre-emphasis and the window are linear). Silence
is ln(eps) = −15.9424, which the float16 cache stores as −15.9453: that stored value is the floor (no cached value
lies below it), so silent frames are recognised as silence and never moved by the gain. (On the normalised scale
the model sees, silence is (−15.94 + 4.27) / 9.14 ≈ −1.28 and 1 dB is 0.0252; the extractor's zero padding
normalises to +0.47.)"""
CLAP_SCALE = DB_SCALE
"""The cached CLAP log-mel is `power_to_db`: 10·log10(max(P, 1e-10)), so 1 dB of gain adds 1 and silence (and
the extractor's zero-padded waveform) is −100 dB: the PANNs scale."""
HF_EXTRACTOR_SCALES = {"ASTFeatureExtractor": AST_SCALE, "ClapFeatureExtractor": CLAP_SCALE}
HF_CODE_VERSION = "hf-features-1"  # the code that caches a Hugging Face extractor's per-clip output


@dataclass(frozen=True)
class FeatureSpec:
    """One cached feature: the name `prep audio` records as config["feature"] (an encoder names the one it
    needs), the `prep audio --features` value that writes it, the numbers shapes depend on, its scale (silence
    value, gain per dB), its code version (config["feature_version"], part of the key) and, for an hf: feature,
    the extractor's class and resolved settings as the cache records them ("extractor_class",
    "extractor_settings"): a cache fits when these match, whatever spelling of the name it was prepped with."""

    feature: str
    features_option: str  # panns | passt | hf:<extractor>
    n_mels: int
    sample_rate: int
    hop_length: int
    scale: FeatureScale = field(default=DB_SCALE)
    version: str = ""
    extractor: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def prep(self) -> str:
        return f"--features {self.features_option}"

    def numbers(self) -> dict[str, int]:
        return {"n_mels": self.n_mels, "sample_rate": self.sample_rate, "hop_length": self.hop_length}


# 2 in the PANNs version: own float32 STFT (≤ 6e-6 dB from librosa.stft)
PANNS = FeatureSpec("panns-logmel", "panns", 64, 32000, 320, DB_SCALE, "logmel-2")
PASST = FeatureSpec("passt-mel", "passt", 128, 32000, 320, PASST_SCALE, "passt-mel-1")
LEGACY_FEATURE = PANNS.feature  # caches written before the feature name was recorded hold the PANNs log-mel


def hf_extractor_spec(source: str, extractor_class: str, n_mels: int, sample_rate: int, hop_length: int,
                      extractor: dict[str, Any] | None = None) -> FeatureSpec:
    """The cached output of the Hugging Face extractor at `source` (a hub name or a folder): named "hf:<source>",
    its numbers the extractor's own (`extractor`: its class and settings, for matching a cache); KeyError for an
    extractor class without a known scale."""
    name = f"hf:{source}"
    return FeatureSpec(name, name, int(n_mels), int(sample_rate), int(hop_length),
                       HF_EXTRACTOR_SCALES[extractor_class], HF_CODE_VERSION, extractor)

"""Audio caches written straight from arrays by the cache layer's own writer (no decoding): for the shard and
`audioret cache` tests."""
from __future__ import annotations

import numpy as np

from audioret.cache.audio_shards import build_audio_cache
from audioret.cache.manifest import Manifest
from audioret.pipeline.features import DEFAULT_CONFIG


def build_cache(root, feats: dict[str, np.ndarray], shard_size: int = 2, name: str = "t") -> Manifest:
    """An audio cache of `feats` (clip id → log-mel) under the default feature config, `shard_size` clips a shard."""
    return build_audio_cache(root, feats, DEFAULT_CONFIG.to_dict(), name=name, shard_size=shard_size)

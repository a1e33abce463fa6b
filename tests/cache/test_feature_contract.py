"""The feature contract (cache/feature_contract.py) and the split table (cache/splits.py) are the one source both
sides read: what `prep audio` writes under each definition is what the trainer's encoders ask for."""
from __future__ import annotations

import numpy as np
import pytest

from audioret.cache.feature_contract import FLOOR_DB, PANNS, PASST
from audioret.cache.splits import SPLIT_ALIASES, split_names, split_role
from audioret.pipeline.audiocaps import SPLIT_ROLES as AUDIOCAPS_ROLES
from audioret.pipeline.feature_defs import feature_definition
from audioret.pipeline.features import log_mel
from audioret.pipeline.passt_features import passt_mel
from audioret.pipeline.wavcaps import SPLIT_ROLES as WAVCAPS_ROLES
from audioret.trainer.config import resolve_split
from audioret.trainer.encoders import feature_spec


@pytest.mark.parametrize("encoder", ["cnn10", "passt"])
def test_prep_audio_writes_what_the_encoder_needs(encoder: str) -> None:
    spec = feature_spec(encoder)
    defn = feature_definition(spec.features_option)
    config = defn.cache_config()
    assert (config["feature"], config["feature_version"]) == (spec.feature, spec.version)
    assert {k: config[k] for k in spec.numbers()} == spec.numbers()
    assert spec in (PANNS, PASST)


def test_silence_is_the_contract_floor_as_stored() -> None:
    """Digital silence through each definition, stored as float16 like every audio cache, is the floor exactly."""
    silence = np.zeros(32000, dtype=np.float32)
    assert np.all(log_mel(silence).astype(np.float16) == np.float16(PANNS.scale.floor))
    assert PANNS.scale.floor == FLOOR_DB
    assert np.all(passt_mel(silence).astype(np.float16) == np.float16(PASST.scale.floor))
    assert float(np.float16(PASST.scale.floor)) == PASST.scale.floor  # the floor is a float16 value itself


def test_split_roles_come_from_one_table() -> None:
    assert AUDIOCAPS_ROLES == {"train": "development", "val": "validation", "test": "evaluation"}
    assert WAVCAPS_ROLES == {"train": "development"}
    assert {split_role(name) for names in SPLIT_ALIASES.values() for name in names} == set(
        names[0] for names in SPLIT_ALIASES.values())
    assert split_names("val") == split_names("validation") == ("validation", "val")
    assert split_names("fold3") == ()
    with pytest.raises(KeyError, match="fold3"):
        split_role("fold3")
    assert resolve_split("fold3", ["fold3", "train"]) == "fold3"  # a dataset's own split: matched by name

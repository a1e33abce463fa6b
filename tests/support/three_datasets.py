"""Three small datasets in one cache root, as the DCASE 2025 recipe trains on them, each prepared by the real
`prep audio` / `prep captions`:

- "clotho": the generated Clotho-layout demo (pipeline/demo_data.py; 8/8/8 clips of 1 s, five captions each);
- "audiocaps": pipeline/audiocaps.py's layout (CSVs + audio/<split>/<ytid>_<start>.wav), 10 training clips;
- "wavcaps": pipeline/wavcaps.py's release layout (json_files/ + Audio/ per source), 10 clips, all "train".

The AudioCaps- and WavCaps-like clips are the real recordings in tests/data/audio (animals, drums, spoken digits),
one caption each saying what it is (as AudioCaps' and WavCaps' training clips have one caption). Built once per
test session under pytest's base temp directory.
"""
from __future__ import annotations

from pathlib import Path

from support import AUDIO
from support.dataset_layouts import make_audiocaps, make_wavcaps
from support.demo import generate_demo, prep_dataset

NAMES = ("clotho", "audiocaps", "wavcaps")
LABELLED = [  # real clip, what it is
    ("animals_cc0/cat.mp3", "a cat meows"), ("animals_cc0/cow.mp3", "a cow moos"),
    ("animals_cc0/dog.mp3", "two dogs bark"), ("animals_cc0/horse.mp3", "a horse neighs"),
    ("animals_cc0/rooster.mp3", "a rooster crows"), ("animals_cc0/sheep.mp3", "a sheep bleats"),
    ("sonic_pi_cc0/bd_808.flac", "a deep bass drum hits once"), ("sonic_pi_cc0/drum_snare_hard.flac",
                                                               "a snare drum is struck hard"),
    ("sonic_pi_cc0/elec_beep.flac", "a short electronic beep"), ("sonic_pi_cc0/loop_amen.flac",
                                                                "a drum break plays"),
    ("sonic_pi_cc0/misc_crow.flac", "a crow caws"), ("sonic_pi_cc0/tabla_na.flac", "a tabla is struck"),
    ("fsdd_ccbysa/0_george_0.wav", "a man says zero"), ("fsdd_ccbysa/1_jackson_0.wav", "a man says one"),
    ("fsdd_ccbysa/2_lucas_0.wav", "a man says two"), ("fsdd_ccbysa/5_george_0.wav", "a man says five"),
]


def audiocaps_like(root: Path) -> Path:
    """10 train clips (one caption each), 2 val and 1 test clip (five captions each), from LABELLED in turn."""
    picks = LABELLED[:10] + LABELLED[10:13]
    rows, n = {"train": [], "val": [], "test": []}, 0
    for split, count, captions in (("train", 10, 1), ("val", 2, 5), ("test", 1, 5)):
        for _ in range(count):
            text = picks[n][1]
            rows[split] += [(100 * n + k, f"ac{n:09d}", "0", text if k == 0 else f"{text}, take {k}")
                            for k in range(captions)]
            n += 1
    return make_audiocaps(root, root, root / "audio", rows_by_split=rows, missing=set(),
                          sources=[AUDIO / p for p, _ in picks])


def wavcaps_like(base: Path) -> Path:
    """10 clips over the four WavCaps sources, real files copied under WavCaps ids (the last 10 of LABELLED)."""
    picks = LABELLED[6:]
    split_at = {"FreeSound": picks[:4], "BBC_Sound_Effects": picks[4:7], "SoundBible": picks[7:9],
                "AudioSet_SL": picks[9:]}
    tree = {source: [(f"{700 + 10 * k + i}" if source != "AudioSet_SL" else f"Yclip{i}_30.000.wav", text,
                      AUDIO / p, Path(p).suffix) for i, (p, text) in enumerate(items)]
            for k, (source, items) in enumerate(split_at.items())}
    return make_wavcaps(base / "WavCaps", tree=tree).parent


def three_caches(base: Path) -> Path:
    """Cache root holding audio + captions caches "clotho", "audiocaps" and "wavcaps"; built once per session."""
    root = base / "three-datasets"
    cache = root / "cache"
    if (root / "done").exists():
        return cache
    prep_dataset("clotho", generate_demo(root / "clotho", "8,8,8", 1.0), cache, "clotho")
    prep_dataset("audiocaps", audiocaps_like(root / "audiocaps"), cache, "audiocaps")
    prep_dataset("wavcaps", wavcaps_like(root / "wavcaps"), cache, "wavcaps")
    (root / "done").touch()
    return cache


def shared_id_caches(base: Path) -> Path:
    """Cache root with "audiocaps" (audiocaps_like) and "wavcaps-as", a WavCaps-like cache whose AudioSet_SL part
    holds two of AudioCaps' training clips again under AudioSet file names (`Y<youtube id>.wav`, and once with a
    start suffix), beside one AudioSet clip and three FreeSound clips AudioCaps does not have; built once."""
    root = base / "shared-ids"
    cache = root / "cache"
    if (root / "done").exists():
        return cache
    prep_dataset("audiocaps", audiocaps_like(root / "audiocaps"), cache, "audiocaps")
    as_sl = [("Yac000000001.wav", LABELLED[1]), ("Yac000000003_0.000.wav", LABELLED[3]),
             ("Yzz000000099.wav", LABELLED[14])]
    tree = {"AudioSet_SL": [(i, text, AUDIO / p, Path(p).suffix) for i, (p, text) in as_sl],
            "FreeSound": [(f"{900 + k}", text, AUDIO / p, Path(p).suffix) for k, (p, text) in
                          enumerate(LABELLED[10:13])]}
    prep_dataset("wavcaps", make_wavcaps(root / "wavcaps" / "WavCaps", tree=tree).parent, cache, "wavcaps-as")
    (root / "done").touch()
    return cache

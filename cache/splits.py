"""Split names, written once: the three roles a split plays and the names each goes by in the caches.

Why in cache/: a cache stores each clip's split under the name its dataset uses (Clotho: development / validation
/ evaluation; AudioCaps and WavCaps: train / val / test), so the reader of any cache needs the same table: the
trainer to find the split it trains, validates or evaluates on (trainer/config.py `resolve_split`), pipeline/ to
say which role a dataset's own split names play (pipeline/audiocaps.py, pipeline/wavcaps.py `SPLIT_ROLES`).
"""
from __future__ import annotations

# Per role, the names a cache may use for it: Clotho's name first (it names the role), then the short one.
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("development", "train"),
    "validation": ("validation", "val"),
    "evaluation": ("evaluation", "test"),
}


def split_names(role_or_name: str) -> tuple[str, ...]:
    """The names of the role that `role_or_name` is ("train", "val", "development", ...) or names, in order of
    preference; () for a name of no role (a dataset's own split, matched by name only)."""
    for role, names in SPLIT_ALIASES.items():
        if role_or_name == role or role_or_name in names:
            return names
    return ()


def split_role(name: str) -> str:
    """The Clotho name of the role a split name plays ("val" → "validation"); KeyError for a name of no role."""
    names = split_names(name)
    if not names:
        raise KeyError(f"split {name!r} plays no role ({', '.join(SPLIT_ALIASES)})")
    return names[0]

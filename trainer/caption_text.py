"""Which form of a caption the text encoder sees: the project's normalised caption, or the DCASE 2025 baseline's.

Why a choice: `prep captions` stores every caption verbatim and normalised (pipeline/text.py), while the DCASE 2025
baseline lower-cases the verbatim caption and deletes ASCII punctuation ("high-pitched" → "highpitched").
`text_normalisation = "dcase2025"` derives that form from the cached verbatim caption in training, evaluation and
for queries, so a run is queried the way it was trained. Back-translations keep the normalised form.
"""
from __future__ import annotations

import string
from typing import Any, Callable, Sequence

TEXT_NORMALISATIONS = ("audioret", "dcase2025")
_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)


def dcase2025_text(raw: str) -> str:
    """The baseline's caption preprocessing: lower case, ASCII punctuation deleted, nothing else."""
    return raw.lower().translate(_ASCII_PUNCTUATION)


def model_texts(style: str, raw: Sequence[str], normalised: Sequence[str]) -> list[str]:
    """The texts the model sees for captions or queries given verbatim and normalised (pipeline/text.py)."""
    if style == "audioret":
        return list(normalised)
    if style == "dcase2025":
        return [dcase2025_text(t) for t in raw]
    raise ValueError(f"text_normalisation must be one of {', '.join(TEXT_NORMALISATIONS)}, got {style!r}")


class DerivedCaptions:
    """A caption cache (cache/caption_shards.py CaptionCache) whose `captions`, `caption_rows` and `all_captions`
    give `derive(raw)` of each verbatim caption (`form` names the derivation); everything else (raw,
    back_translations, ids, key) is the cache's."""

    def __init__(self, cache: Any, form: str, derive: Callable[[str], str]) -> None:
        self.cache, self.form = cache, form
        self._texts = {cid: [derive(t) for t in cache.raw(cid)] for cid in cache.clip_ids}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cache, name)

    def captions(self, clip_id: str) -> list[str]:
        return self._texts[clip_id]

    def caption_rows(self, split: str | None = None) -> tuple[Any, Any, list[str]]:
        """The cache's columns (clip index, caption index, text) with the derived form as the text."""
        clip, index, _ = self.cache.caption_rows(split)
        ids = self.cache.clip_ids
        return clip, index, [self._texts[ids[c]][i] for c, i in zip(clip.tolist(), index.tolist(), strict=False)]

    def all_captions(self, split: str | None = None) -> list[tuple[str, int, str]]:
        clip, index, texts = self.caption_rows(split)
        return [(self.cache.clip_ids[c], i, t) for c, i, t in zip(clip.tolist(), index.tolist(), texts, strict=False)]


def caption_view(captions: Any, style: str) -> Any:
    """The caption cache as the model should read it under `text_normalisation = style` (idempotent)."""
    model_texts(style, [], [])  # an unknown style fails here
    if style == "audioret" or (isinstance(captions, DerivedCaptions) and captions.form == style):
        return captions
    return DerivedCaptions(captions, style, dcase2025_text)


def verbatim_captions(captions: Any) -> DerivedCaptions:
    """The caption cache with every caption as its source CSV has it (case, punctuation, spaces): what a
    pretrained model's own processor is given (zero-shot CLAP: `ClapProcessor(text=caption)`)."""
    return DerivedCaptions(captions, "verbatim", str)

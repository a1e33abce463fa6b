"""The one caption normaliser, used for training captions at `prep captions` and for free-text queries.

The paper lower-cases captions and strips punctuation before WordPiece tokenisation; keeping a single function
means a query typed at retrieve time goes through exactly the transformation the model was trained on. Rules
(chosen so tokens stay words): NFKC, lower case, apostrophes dropped inside words, every other punctuation or
symbol a space, whitespace collapsed (docs/data.md).
"""
from __future__ import annotations

import re
import unicodedata

NORMALISATION = "nfkc-lower-strip-punct-v1"  # recorded in caption shard attributes and the cache key

_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc`\u00b4]")
_NOT_WORD = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")


def normalise_caption(text: str) -> str:
    """Lower-case `text`, strip punctuation and collapse whitespace (see the module docstring for the rules)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHES.sub("", text)
    text = _NOT_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()

"""The paper's EDA and back-translation substitution, applied on the fly to each training caption.

EDA exactly as Primus & Widmer describe it (not jasonwei20/eda_nlp, which changes a fixed number of words): with
probability p_eda pick ONE of insert / delete / swap / synonym, then apply it to every word independently with
that operation's own probability. Per word one random draw and a dict look-up, so the text side never slows
training; synonyms are cached per word, and `warm(vocabulary)` fills the cache before workers fork. The operations:
docs/training.md.
"""
from __future__ import annotations

import random
import re
import warnings
from typing import Iterable, Protocol, Sequence

from audioret.trainer.wordnet import load_wordnet

OPS = ("insert", "delete", "swap", "synonym")
_LEMMA_OK = re.compile(r"^[a-z]+( [a-z]+)*$")
# eda_nlp's stop list: WordNet maps these to unrelated senses ("in" → "inch", "a" → "angstrom").
STOP_WORDS = frozenset(
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers "
    "herself it its itself they them their theirs themselves what which who whom this that these those am is are "
    "was were be been being have has had having do does did doing a an the and but if or because as until while "
    "of at by for with about against between into through during before after above below to from up down in "
    "out on off over under again further then once here there when where why how all any both each few more "
    "most other some such no nor not only own same so than too very s t can will just don should now".split())


def _as_random(rng: object) -> random.Random:
    """Accept random.Random (fast path) or a numpy Generator (one draw seeds a Random)."""
    if isinstance(rng, random.Random):
        return rng
    if hasattr(rng, "integers"):
        return random.Random(int(rng.integers(0, 2 ** 63)))
    raise TypeError(f"rng must be random.Random or numpy.random.Generator, not {type(rng).__name__}")


class EDA:
    """`EDA(vocabulary, p_eda, p_syn, p_swp, p_del, p_ins, seed=...)`; call `eda(caption, rng)` per example."""

    def __init__(self, vocabulary: Iterable[str], p_eda: float = 0.0, p_syn: float = 0.0, p_swp: float = 0.0,
                 p_del: float = 0.0, p_ins: float = 0.0, seed: int | None = None,
                 generator: random.Random | None = None):
        for name, p in (("p_eda", p_eda), ("p_syn", p_syn), ("p_swp", p_swp), ("p_del", p_del), ("p_ins", p_ins)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"EDA: {name}={p} is outside [0, 1]")
        self.vocabulary: list[str] = sorted(set(vocabulary))
        if p_eda > 0 and p_ins > 0 and not self.vocabulary:
            raise ValueError("EDA: insertion (p_ins > 0) needs a non-empty vocabulary of training words")
        self.p_eda, self.p_syn, self.p_swp, self.p_del, self.p_ins = p_eda, p_syn, p_swp, p_del, p_ins
        self.rng = generator or random.Random(seed)
        self._syn: dict[str, tuple[str, ...]] = {}
        if p_eda > 0 and p_syn > 0:
            self.ensure_wordnet()

    @staticmethod
    def ensure_wordnet() -> None:
        """Load WordNet now; raises WordNetMissingError (one line, with the install command) if it is absent."""
        load_wordnet()

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Sorted WordNet synonyms of `word` (lower-case, spaced multi-word lemmas, never `word`), cached."""
        found = self._syn.get(word)
        if found is None:
            found = ()
            if word not in STOP_WORDS:
                wn = load_wordnet()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    lemmas = {lemma.replace("_", " ").replace("-", " ").lower()
                              for synset in wn.synsets(word) for lemma in synset.lemma_names()}
                found = tuple(sorted(s for s in lemmas if s != word and _LEMMA_OK.match(s)))
            self._syn[word] = found
        return found

    def warm(self, words: Iterable[str]) -> int:
        """Fill the synonym cache (call before DataLoader workers fork); returns the cache size."""
        for w in words:
            self.synonyms(w)
        return len(self._syn)

    def __getstate__(self) -> dict:
        return dict(self.__dict__)  # plain data only: the WordNet reader is module-level, never pickled

    def __call__(self, caption: str, rng: object = None) -> str:
        r = self.rng if rng is None else _as_random(rng)
        if self.p_eda <= 0.0 or r.random() >= self.p_eda:
            return caption
        words = caption.split()
        if not words:
            return caption
        op = OPS[r.randrange(4)]
        if op == "insert":
            out = self._insert(words, r)
        elif op == "delete":
            out = self._delete(words, r)
        elif op == "swap":
            out = self._swap(words, r)
        else:
            out = self._synonym(words, r)
        return " ".join(out)

    def _insert(self, words: list[str], r: random.Random) -> list[str]:
        p = self.p_ins
        if p <= 0:
            return words
        out: list[str] = []
        vocab = self.vocabulary
        for w in words:
            out.append(w)
            if r.random() < p:
                out.append(vocab[r.randrange(len(vocab))])
        return out

    def _delete(self, words: list[str], r: random.Random) -> list[str]:
        p = self.p_del
        if p <= 0:
            return words
        out = [w for w in words if r.random() >= p]
        return out or [words[r.randrange(len(words))]]

    def _swap(self, words: list[str], r: random.Random) -> list[str]:
        p, n = self.p_swp, len(words)
        if p <= 0 or n < 2:
            return words
        out = list(words)
        for i in range(n):
            if r.random() < p:
                j = r.randrange(n - 1)
                j += j >= i  # uniform over the other positions
                out[i], out[j] = out[j], out[i]
        return out

    def _synonym(self, words: list[str], r: random.Random) -> list[str]:
        p = self.p_syn
        if p <= 0:
            return words
        out = list(words)
        for i, w in enumerate(words):
            if r.random() < p:
                choices = self._syn.get(w)
                if choices is None:
                    choices = self.synonyms(w)
                if choices:
                    out[i] = choices[r.randrange(len(choices))]
        return out


class CaptionView(Protocol):
    """What TextAugmenter needs of a caption cache (cache.caption_shards.CaptionCache fits)."""

    pivots: list[str]
    backend: str

    def captions(self, clip_id: str) -> list[str]: ...

    def back_translations(self, clip_id: str) -> dict[str, list[str]]: ...


def vocabulary_of(captions: Iterable[str]) -> list[str]:
    """Sorted unique words of (normalised) training captions: EDA's insertion vocabulary."""
    return sorted({w for c in captions for w in c.split()})


class TextAugmenter:
    """Per training example: with p_bt use a back-translation (pivot uniform), then EDA."""

    def __init__(self, caption_cache_view: CaptionView, p_bt: float, eda: EDA | None):
        self.view = caption_cache_view
        self.pivots: Sequence[str] = list(caption_cache_view.pivots) if caption_cache_view.backend != "none" else []
        self.p_bt = p_bt if self.pivots else 0.0
        if p_bt > 0 and not self.pivots:
            warnings.warn("captions cache has no back-translations (translator none): p_bt treated as 0",
                          stacklevel=2)
        self.eda = eda

    def pick(self, clip_id: str, caption_index: int, rng: object) -> str:
        r = _as_random(rng)
        if self.p_bt > 0 and r.random() < self.p_bt:
            pivot = self.pivots[r.randrange(len(self.pivots))]
            text = self.view.back_translations(clip_id)[pivot][caption_index]
        else:
            text = self.view.captions(clip_id)[caption_index]
        return self.eda(text, r) if self.eda is not None else text

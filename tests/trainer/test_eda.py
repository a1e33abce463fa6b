"""Caption normalisation and the paper's EDA on real captions: the per-word rates follow the probabilities,
p = 0 is the identity, synonyms come from WordNet, nothing is ever empty, and draws are seeded."""
from __future__ import annotations

import csv
import math
import random
import stat
from pathlib import Path

import pytest

from audioret.pipeline.text import normalise_caption
from audioret.trainer.eda import EDA, OPS, STOP_WORDS, TextAugmenter, vocabulary_of
from audioret.trainer.wordnet import WordNetMissingError, lexnames_text, load_wordnet, setup_wordnet
from support import DATA


def real_captions() -> list[str]:
    """Normalised captions: the bundled animal clips' captions plus the Clotho-style fixture captions."""
    out = []
    for path in (DATA / "audio" / "animals_cc0" / "captions.csv", DATA / "captions" / "clotho_style.csv"):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                out += [normalise_caption(v) for k, v in row.items() if k.startswith("caption") and v]
    return out


CAPTIONS = real_captions()
VOCAB = vocabulary_of(CAPTIONS)


@pytest.mark.parametrize("raw, expected", [
    ("A dog barks, loudly!", "a dog barks loudly"),
    ("The dog's bark   echoes\tin the   hall.", "the dogs bark echoes in the hall"),
    ("High-pitched beeping; then silence...", "high pitched beeping then silence"),
    ("“Quoted” words — and ’curly’ apostrophes’s", "quoted words and curly apostrophess"),
    ("  CAFÉ   noise ", "café noise"),
    ("Ｆｕｌｌｗｉｄｔｈ ＴＥＸＴ", "fullwidth text"),
    ("...", ""),
])
def test_normalise_caption(raw: str, expected: str) -> None:
    assert normalise_caption(raw) == expected
    assert normalise_caption(expected) == expected  # idempotent


def test_probability_zero_is_identity() -> None:
    rng = random.Random(0)
    off = EDA(VOCAB, p_eda=0.0, p_syn=0.9, p_swp=0.9, p_del=0.9, p_ins=0.9)
    none_ = EDA(VOCAB, p_eda=1.0)
    for cap in CAPTIONS * 5:
        assert off(cap, rng) == cap
        assert none_(cap, rng) == cap


def _variance_bound(ns: list[int], p: float) -> tuple[float, float]:
    """Mean and sd of the words changed over draws when one of 4 ops is chosen and only one has rate p."""
    mean = sum(0.25 * n * p for n in ns)
    var = sum(0.25 * n * p * (1 - p) + 0.1875 * (n * p) ** 2 for n in ns)
    return mean, math.sqrt(var)


@pytest.mark.parametrize("op, p", [("delete", 0.3), ("insert", 0.2)])
def test_changed_word_counts_follow_probability(op: str, p: float) -> None:
    kw = {"p_del": p} if op == "delete" else {"p_ins": p}
    eda = EDA(VOCAB, p_eda=1.0, seed=1, **kw)
    rng = random.Random(2)
    caps = [c for c in CAPTIONS if len(c.split()) >= 6] * 150
    ns, changed = [], 0
    for cap in caps:
        out = eda(cap, rng).split()
        ns.append(len(cap.split()))
        changed += abs(len(out) - len(cap.split()))
        assert out, "never empty"
        if op == "insert":
            assert all(w in VOCAB for w in out)
    mean, sd = _variance_bound(ns, p)
    assert abs(changed - mean) < 4 * sd, (changed, mean, sd)


def test_one_operation_chosen_uniformly() -> None:
    """With every rate at 1 the op is readable from the result; each of the 4 ops must come up ~1/4 of draws."""
    eda = EDA(VOCAB, p_eda=1.0, p_syn=1.0, p_swp=1.0, p_del=1.0, p_ins=1.0, seed=3)
    cap = "a dog barks loudly while heavy rain falls on the metal roof"
    words = cap.split()
    counts = dict.fromkeys(OPS, 0)
    n = 2000
    rng = random.Random(4)
    for _ in range(n):
        out = eda(cap, rng).split()
        if len(out) == 2 * len(words):
            counts["insert"] += 1
        elif len(out) == 1:
            counts["delete"] += 1
        elif sorted(out) == sorted(words):
            counts["swap"] += 1
        else:
            counts["synonym"] += 1
    sd = math.sqrt(n * 0.25 * 0.75)
    for c in counts.values():
        assert abs(c - n / 4) < 4 * sd, counts


def test_synonyms_come_from_wordnet_at_the_given_rate() -> None:
    wn = load_wordnet()
    eda = EDA(VOCAB, p_eda=1.0, p_syn=0.25, seed=5)
    rng = random.Random(6)
    eligible = replaced = 0
    for cap in CAPTIONS * 20:
        words = cap.split()
        out = eda._synonym(words, rng)  # aligned with `words`: a multi-word lemma is one spaced element
        for w, o in zip(words, out, strict=False):
            if not eda.synonyms(w):
                assert o == w
                continue
            eligible += 1
            if o != w:
                replaced += 1
                lemmas = {lem.replace("_", " ").replace("-", " ").lower()
                          for s in wn.synsets(w) for lem in s.lemma_names()}
                assert o in lemmas, (w, o)
    sd = math.sqrt(eligible * 0.25 * 0.75)
    assert abs(replaced - 0.25 * eligible) < 4 * sd, (replaced, eligible)
    assert "forest" in eda.synonyms("woods") or "wood" in eda.synonyms("woods")
    assert any(" " in s for s in eda.synonyms("dog")), "multi-word lemmas become spaced words"
    assert eda.synonyms("the") == () and "in" in STOP_WORDS


def test_swap_keeps_the_words_and_changes_at_the_expected_rate() -> None:
    p = 0.1
    eda = EDA(VOCAB, p_eda=1.0, p_swp=p, seed=7)
    cap = "rain is pouring down hard on a tin roof during storm"  # all words distinct
    words = cap.split()
    rng = random.Random(8)
    n, changed = 4000, 0
    for _ in range(n):
        out = eda(cap, rng).split()
        assert sorted(out) == sorted(words)
        changed += out != words
    expect = 0.25 * (1 - (1 - p) ** len(words))  # swaps that undo each other are O(p^2) and rare
    assert abs(changed / n - expect) < 0.04, (changed / n, expect)


def test_seeded_and_never_empty() -> None:
    a = EDA(VOCAB, p_eda=0.9, p_syn=0.3, p_swp=0.2, p_del=0.9, p_ins=0.2, seed=11)
    b = EDA(VOCAB, p_eda=0.9, p_syn=0.3, p_swp=0.2, p_del=0.9, p_ins=0.2, seed=11)
    outs_a = [a(c) for c in CAPTIONS * 3]
    assert outs_a == [b(c) for c in CAPTIONS * 3]
    assert all(o.strip() for o in outs_a)
    assert EDA(VOCAB, p_eda=1.0, p_del=1.0)("dog") == "dog"


class _View:
    """A caption cache view built from the fixture captions (what TextAugmenter reads)."""

    backend, pivots = "marian", ["de", "fr"]

    def captions(self, clip_id: str) -> list[str]:
        return ["a dog barks", "a hound bays"]

    def back_translations(self, clip_id: str) -> dict[str, list[str]]:
        return {"de": ["a dog is barking", "a hound is baying"], "fr": ["the dog barks", "the hound bays"]}


def test_text_augmenter_substitutes_back_translations_with_p_bt() -> None:
    rng = random.Random(9)
    aug = TextAugmenter(_View(), p_bt=0.4, eda=None)
    picks = [aug.pick("x", 0, rng) for _ in range(3000)]
    bt = sum(p != "a dog barks" for p in picks)
    assert abs(bt / 3000 - 0.4) < 0.04
    assert {p for p in picks} == {"a dog barks", "a dog is barking", "the dog barks"}
    assert TextAugmenter(_View(), p_bt=0.0, eda=None).pick("x", 1, rng) == "a hound bays"
    view = _View()
    view.backend = "none"
    with pytest.warns(UserWarning, match="p_bt treated as 0"):
        assert TextAugmenter(view, p_bt=1.0, eda=None).pick("x", 0, rng) == "a dog barks"


def test_wordnet_layout_and_missing_wordnet_message(tmp_path: Path) -> None:
    assert len(lexnames_text().splitlines()) == 45
    target = setup_wordnet(tmp_path / "nltk", Path("/usr/share/wordnet"))
    assert (target / "corpora" / "wordnet" / "lexnames").read_text() == lexnames_text()
    with pytest.raises(WordNetMissingError, match="apt-get install wordnet-base wordnet-sense-index") as exc:
        setup_wordnet(tmp_path / "other", tmp_path / "no-wordnet")
    assert "\n" not in str(exc.value)


def test_wordnet_corpus_is_readable_by_other_users(tmp_path: Path) -> None:
    """Built once by root at image build time, read by the image's uid 1000: the corpus dir gets a mkdir's mode,
    not mkdtemp's 0700 (which made `train` fail in the container with 'No such file or directory: .../lexnames')."""
    (tmp_path / "plain").mkdir()
    corpus = setup_wordnet(tmp_path / "nltk", Path("/usr/share/wordnet")) / "corpora" / "wordnet"
    assert stat.S_IMODE(corpus.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)

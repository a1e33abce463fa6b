"""Back-translation backends (google, marian, none) behind one small interface, plus the resumable driver.

A backend only translates a batch of texts from one language to another. The driver `translate_all` asks the
persistent `TranslationStore` first, sends only what is missing, and commits each batch as it comes back.
`TranslationFailed` (one text; listed, the run goes on) and `TranslatorUnavailable` (the service or model is
unusable; the run stops, everything stored is kept) keep partial failure honest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from audioret.pipeline.translate.store import TranslationStore

BACKENDS = ("google", "marian", "none")
SOURCE_LANG = "en"


class TranslationFailed(Exception):
    """One text could not be translated (the service answered, but not with a translation)."""


class TranslatorUnavailable(Exception):
    """The backend cannot work at all (network unreachable, rate limit persists, model missing)."""


class Backend(Protocol):
    name: str
    max_batch: int  # texts per request; google sends one per request so each is committed as it arrives

    def engine(self, src: str, tgt: str) -> str:
        """Identifier of the model/engine used for src→tgt (part of the store key)."""

    def translate_batch(self, texts: Sequence[str], src: str, tgt: str) -> list[str | TranslationFailed]:
        """Translations aligned with `texts`; a per-text failure is returned as a TranslationFailed value."""


def text_lengths(backend: Backend, texts: Sequence[str], src: str, tgt: str) -> list[int]:
    """The length a batch of `texts` is padded by: the backend's own token counts where it has a tokenizer
    (`backend.token_lengths`, marian), else characters."""
    counted = getattr(backend, "token_lengths", None)
    return list(counted(texts, src, tgt)) if counted is not None else [len(t) for t in texts]


@dataclass
class TranslationResult:
    done: dict[str, str] = field(default_factory=dict)  # source → translation
    failed: dict[str, str] = field(default_factory=dict)  # source → error message
    n_requested: int = 0  # how many went to the backend (0 on a fully cached rerun)


def direction(src: str, tgt: str) -> str:
    return f"{src}->{tgt}"


def translate_all(backend: Backend, store: TranslationStore, texts: Sequence[str], src: str, tgt: str,
                  pivot: str, batch_size: int = 64,
                  on_progress: Callable[[int], None] | None = None) -> TranslationResult:
    """Translate the unique `texts` src→tgt through `store`; raises TranslatorUnavailable (stored work is kept).

    Batches are cut from the missing texts sorted by length (`text_lengths`; ties alphabetical, so the order is
    deterministic): a batched model pads every text of a generate() call to the longest one, and alphabetical
    batches of 64 were about half padding (benchmarks/translation_store.py prints the share for each order).
    Each batch is committed before the next one is sent, so a kill loses at most the batch in flight."""
    engine = backend.engine(src, tgt)
    unique = sorted(set(texts))
    res = TranslationResult(done=store.get_many(backend.name, engine, pivot, direction(src, tgt), unique))
    if on_progress and res.done:
        on_progress(len(res.done))
    missing = [t for t in unique if t not in res.done]
    if backend.max_batch > 1 and len(missing) > 1:
        length = dict(zip(missing, text_lengths(backend, missing, src, tgt), strict=False))
        missing.sort(key=length.__getitem__)
    batch_size = max(1, min(batch_size, backend.max_batch))
    for i in range(0, len(missing), batch_size):
        batch = missing[i:i + batch_size]
        out = backend.translate_batch(batch, src, tgt)
        good = [(s, t) for s, t in zip(batch, out, strict=False) if not isinstance(t, Exception)]
        store.put_many(backend.name, engine, pivot, direction(src, tgt), good)
        res.n_requested += len(batch)
        res.done.update(good)
        res.failed.update((s, str(t)) for s, t in zip(batch, out, strict=False) if isinstance(t, Exception))
        if on_progress:
            on_progress(len(batch))
    return res


def make_backend(name: str, **options: object) -> Backend | None:
    """Build a backend by name ("none" → None). Options are those of the backend's constructor."""
    if name == "none":
        return None
    if name == "google":
        from audioret.pipeline.translate.google import GoogleBackend
        return GoogleBackend(**options)  # type: ignore[arg-type]
    if name == "marian":
        from audioret.pipeline.translate.marian import MarianBackend
        return MarianBackend(**options)  # type: ignore[arg-type]
    raise ValueError(f"unknown translator {name!r}; choose one of {', '.join(BACKENDS)}")

"""Offline back-translation with MarianMT (Helsinki-NLP opus-mt models), batched, on GPU when present.

Why a second backend: Google cannot be reached from many machines and rate-limits large jobs; opus-mt models run
offline from the HF cache or a local folder, named from a template with `{src}` and `{tgt}`. Batches are cut from
texts sorted by SentencePiece length (`token_lengths`) so they pad little; decoding follows the model's own
generation config under `torch.inference_mode`.
"""
from __future__ import annotations

from typing import Sequence

from audioret.cache.hub import PretrainedSourceError, check_source, unreachable_hint
from audioret.pipeline.translate import TranslationFailed, TranslatorUnavailable

DEFAULT_TEMPLATE = "Helsinki-NLP/opus-mt-{src}-{tgt}"


def marian_device(device: str) -> str:
    """auto → cuda when available, else cpu; cuda without a GPU is a clear error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise TranslatorUnavailable("marian: --device cuda requested but torch sees no CUDA GPU")
    if device not in ("cpu", "cuda"):
        raise TranslatorUnavailable(f"marian: unknown device {device!r} (auto, cpu or cuda)")
    return device


class MarianBackend:
    """Loads one MarianMT model per direction on first use and keeps it for the run."""

    name = "marian"

    def __init__(self, template: str = DEFAULT_TEMPLATE, device: str = "auto", batch_size: int = 64,
                 max_new_tokens: int = 128):
        self.template = template
        self.device = marian_device(device)
        self.max_batch = max(1, batch_size)
        self.max_new_tokens = max_new_tokens
        self._models: dict[str, tuple[object, object]] = {}

    def engine(self, src: str, tgt: str) -> str:
        return self.template.format(src=src, tgt=tgt)

    def _load(self, name: str) -> tuple[object, object]:
        if name not in self._models:
            import warnings

            from transformers import MarianMTModel, MarianTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # our own tqdm (captions/s) is the one progress bar
            try:
                check_source(name)  # a missing folder is said so; no hub: fail at once (cache/hub.py)
            except PretrainedSourceError as exc:
                raise TranslatorUnavailable(f"marian: {exc} (--marian-model-template)") from None
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*sacremoses")  # only used for detokenising
                    tok = MarianTokenizer.from_pretrained(name)
                model = MarianMTModel.from_pretrained(name).to(self.device).eval()
            except (OSError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise TranslatorUnavailable(
                    f"marian: cannot load {name} ({first}){unreachable_hint()}; download it once with network access "
                    f"(huggingface-cli download {name}) or pass --marian-model-template with a local path"
                ) from None
            self._models[name] = (tok, model)
        return self._models[name]

    def token_lengths(self, texts: Sequence[str], src: str, tgt: str) -> list[int]:
        """Source pieces per text, the key `translate_all` sorts by so each batch pads little.

        Straight from the SentencePiece model (~15 µs a text here) rather than through MarianTokenizer's
        __call__ (~170 µs: ids, special tokens, tensors) that translate_batch pays anyway; characters where
        the tokenizer has no `spm_source` (another tokenizer class)."""
        tok, _ = self._load(self.engine(src, tgt))
        sp = getattr(tok, "spm_source", None)
        if sp is None:
            return [len(t) for t in texts]
        return [len(pieces) for pieces in sp.encode(list(texts))]

    def translate_batch(self, texts: Sequence[str], src: str, tgt: str) -> list[str | TranslationFailed]:
        import torch

        tok, model = self._load(self.engine(src, tgt))
        # Sort by length so each generate() call pads little; restore the caller's order afterwards.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[str | TranslationFailed] = [TranslationFailed("not translated")] * len(texts)
        # Neither side may run past the model's position table (512 for opus-mt): an over-long input is cut there
        # instead of failing its whole batch with an index error.
        positions = int(getattr(model.config, "max_position_embeddings", 512))
        enc = tok([texts[i] for i in order], return_tensors="pt", padding=True, truncation=True,
                  max_length=positions)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            generated = model.generate(**enc, max_new_tokens=min(self.max_new_tokens, positions - 1))
        decoded = tok.batch_decode(generated, skip_special_tokens=True)
        for i, text in zip(order, decoded, strict=False):
            text = text.strip()
            out[i] = text if text else TranslationFailed(f"marian: empty translation of {texts[i]!r}")
        return out

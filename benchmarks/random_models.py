"""Randomly initialised transformers models written to local folders, built from configs: no hub download.

Why: step-time benchmarks need the real architectures (RoBERTa-large is 24 layers of width 1024 whatever its
weights), tests need tiny ones, and neither the test machines nor the GPU machines reach the Hugging Face hub.
A folder written here loads like a hub model (`AutoModel.from_pretrained(folder)`), so `text_model=<folder>` and
`audio_encoder=hf:<folder>` go through the project's own loading code.

The tokenizer is a WordPiece vocabulary of common caption words plus single characters (every word stays
tokenisable, about one token per common word, as with the real tokenizers on captions); the full-size models keep
their real vocabulary size, so embedding and optimiser costs match the pretrained ones.
"""
from __future__ import annotations

import string
import warnings
from pathlib import Path

CAPTION_WORDS = """a an the of in on at to and while as with from by is are was be being into onto over through
then again several many some one two small large loud soft quiet distant nearby high low deep heavy gentle
dog dogs barks barking bird birds chirp chirping sing singing tweet wind blows blowing trees leaves rustle
rain falls falling drops water splashes flows running stream waves crash shore car cars engine drives passes
traffic horn honks people talk talking man woman child children laugh laughs crowd claps cheering music plays
playing piano guitar drum drums beat door closes opens footsteps walk walking clock ticks ticking bell rings
machine hums humming motor buzzes metal clanks glass breaks paper crumples fire crackles thunder rumbles storm
background foreground outside inside room street city forest kitchen beach night repeatedly continuously
""".split()

SIZES = {  # hidden, layers, heads, intermediate
    "tiny": (32, 2, 2, 64),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
}
REAL_VOCAB = {"bert": 30522, "roberta": 50265}


def _quiet() -> None:
    """No per-file progress bars while saving (benchmark and test output stay readable)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def write_wordpiece_tokenizer(out: Path):
    """A BertTokenizerFast over CAPTION_WORDS + characters, lower-casing, saved into `out`; returns it."""
    from transformers import BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits)
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(CAPTION_WORDS)) + chars
             + list(string.punctuation) + [f"##{c}" for c in chars])
    vocab = list(dict.fromkeys(vocab))
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    try:  # transformers 5 takes the vocabulary itself, 4 a vocab file
        tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    except TypeError:
        tokenizer = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(out)
    return tokenizer


def random_text_model(out: str | Path, arch: str = "bert", size: str = "tiny", seed: int = 0) -> Path:
    """A random-init BERT or RoBERTa of `size` (tiny | base | large) with the WordPiece tokenizer, in `out`."""
    import torch
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

    out = Path(out)
    tokenizer = write_wordpiece_tokenizer(out)
    hidden, layers, heads, ffn = SIZES[size]
    vocab = len(tokenizer) if size == "tiny" else REAL_VOCAB[arch]
    common = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=ffn, pad_token_id=tokenizer.pad_token_id)
    if arch == "bert":
        config, cls = BertConfig(max_position_embeddings=512, **common), BertModel
    elif arch == "roberta":  # RoBERTa counts positions from pad_token_id + 1, hence 2 more
        config, cls = RobertaConfig(max_position_embeddings=514, type_vocab_size=1, **common), RobertaModel
    else:
        raise ValueError(f"arch must be bert or roberta, got {arch!r}")
    torch.manual_seed(seed)
    _quiet()
    cls(config, add_pooling_layer=False).save_pretrained(out)
    return out


def random_ast_model(out: str | Path, size: str = "full", seed: int = 0) -> Path:
    """A random-init Audio Spectrogram Transformer (AudioSet AST: 12 layers of 768, 128 mel bins, 1024 frames;
    "tiny": 2 layers of 32, 128 frames) with its feature extractor, in `out` (for `audio_encoder=hf:<out>`)."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if size == "tiny":
        config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           max_length=128)
    elif size == "full":
        config = ASTConfig()
    else:
        raise ValueError(f"size must be full or tiny, got {size!r}")
    torch.manual_seed(seed)
    _quiet()
    ASTModel(config).save_pretrained(out)
    with warnings.catch_warnings():  # its own default filter bank warns about an empty mel filter: not ours
        warnings.simplefilter("ignore", UserWarning)
        ASTFeatureExtractor(max_length=config.max_length).save_pretrained(out)
    return out

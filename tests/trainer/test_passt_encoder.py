"""The PaSST encoder (trainer/encoders/passt.py) against hear21passt's own model on the same weights and real PaSST
mels: eval mode, train mode with the same structured patchout, the baseline's 10-s segment averaging, checkpoint
loading (hear21passt's state-dict layout) and its report, and the config checks.

hear21passt's package cannot be imported whole here: `hear21passt.base` imports `models/preprocess.py`, which imports
torchaudio at import time, and torchaudio's wheels pin another torch than this project's CPU build (the Makefile
installs hear21passt with --no-deps). Only `hear21passt/models/passt.py` is imported: the model itself. Its helper
module imports timm for one function, `download_cached_file`, used only to download pretrained weights; timm in turn
needs a torchvision built for the installed torch, which the package registry offers only for CUDA builds of torch.
When timm cannot be imported, that one name is provided for the duration of the import by a stand-in that refuses
to download; every piece of the model that computes something is hear21passt's own code.
"""
from __future__ import annotations

import functools
import importlib
import sys
import types

import numpy as np
import pytest
import torch

from audioret.cache.feature_contract import PASST_SCALE
from audioret.pipeline.audio_io import load_mono
from audioret.pipeline.passt_features import passt_mel
from audioret.trainer.config import ConfigError, load_config
from audioret.trainer.encoders import build_audio_encoder
from audioret.trainer.encoders.loading import ModelLoadError
from audioret.trainer.encoders.passt import MASK_VALUE, PasstEncoder, patch_grid
from support import AUDIO

FLOOR = PASST_SCALE.floor
SR = 32000
SOURCES = ["animals_cc0/cow.mp3", "animals_cc0/dog.mp3", "animals_cc0/cat.mp3", "animals_cc0/horse.mp3",
           "animals_cc0/rooster.mp3", "sonic_pi_cc0/loop_amen.flac", "animals_cc0/sheep.mp3"]  # 23.2 s together


def hear21passt_model_module():
    """hear21passt/models/passt.py alone (see the module docstring for why, and what the stand-in is)."""
    try:
        importlib.import_module("hear21passt")
    except ImportError:
        pytest.skip("hear21passt is not installed (make test installs it: pip install --no-deps hear21passt)")
    try:
        importlib.import_module("timm.models._hub")
        return importlib.import_module("hear21passt.models.passt")
    except ImportError:
        pass

    def download_cached_file(*args, **kwargs):
        raise RuntimeError("the reference test never downloads weights")

    names = ("timm", "timm.models", "timm.models._hub")
    saved = {n: sys.modules.get(n) for n in names}
    stand_in = {n: types.ModuleType(n) for n in names}
    stand_in["timm.models._hub"].download_cached_file = download_cached_file
    sys.modules.update(stand_in)
    try:
        return importlib.import_module("hear21passt.models.passt")
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module


@pytest.fixture(scope="module")
def ref_module():
    return hear21passt_model_module()


def reference(ref_module, width: int = 128, depth: int = 2, stride: int = 10, patchout=(0, 0)):
    """hear21passt's PaSST as get_model builds `passt_s_swa_p16_128_ap476` (stride 10, 998 frames) or
    `passt_s_p16_s16_128_ap468` (stride 16, 1000 frames), at a small width/depth, random weights, eval mode."""
    torch.manual_seed(0)
    model = ref_module.PaSST(s_patchout_t=patchout[0], s_patchout_f=patchout[1],
                             img_size=(128, 998 if stride == 10 else 1000), patch_size=16, stride=stride,
                             in_chans=1, num_classes=527, embed_dim=width, depth=depth, num_heads=width // 64,
                             distilled=True)
    with torch.no_grad():  # hear21passt zeroes biases and LayerNorm shifts at init: make them count too
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def reference_features(model, x: torch.Tensor) -> torch.Tensor:
    """hear21passt's `forward` returns (logits, features): features = mean of the cls and dist tokens."""
    return model(x)[1]


@functools.lru_cache(maxsize=1)
def real_waveform() -> np.ndarray:
    """23.2 s of real recordings at 32 kHz (decoded once)."""
    return np.concatenate([load_mono(AUDIO / s, on_message=lambda m: None) for s in SOURCES])


def mel_batch(clips: list[np.ndarray], pad_value: float = FLOOR) -> tuple[torch.Tensor, torch.Tensor]:
    mels = [passt_mel(c) for c in clips]
    lengths = torch.tensor([m.shape[0] for m in mels])
    x = torch.full((len(mels), int(lengths.max()), 128), pad_value)
    for i, m in enumerate(mels):
        x[i, :m.shape[0]] = torch.from_numpy(m)
    return x, lengths


def encoder_like(model, stride: int = 10, copy: bool = True, **kw) -> PasstEncoder:
    """An encoder of the reference's size, holding its weights (copy) or random ones."""
    torch.manual_seed(1)
    enc = PasstEncoder(width=model.embed_dim, depth=len(model.blocks), stride=stride, embed_dim=32, **kw).eval()
    if copy:
        missing, unexpected = enc.passt.load_state_dict(model.state_dict(), strict=False)
        assert not missing and all(k.startswith("head") for k in unexpected)
    return enc


@pytest.mark.parametrize("stride", [10, 16])
def test_forward_equals_hear21passt_in_eval_and_in_train_mode_with_patchout(ref_module, tmp_path, stride):
    ref = reference(ref_module, stride=stride, patchout=(3, 2))
    torch.save(ref.state_dict(), tmp_path / "passt.pt")
    enc = encoder_like(ref, stride, copy=False)
    enc.load_checkpoint(tmp_path / "passt.pt")  # the path a run takes: hear21passt's state dict from a file
    y = real_waveform()
    x, _ = mel_batch([y[:320000], y[320000:640000], y[-320000:]])  # three real 10-s segments, 1000 frames each
    x = x.transpose(1, 2).unsqueeze(1)
    with torch.no_grad():
        diff_eval = (enc.passt(x) - reference_features(ref, x)).abs().max().item()
        ref.train(), enc.train()
        torch.manual_seed(7)  # hear21passt draws the patchout from torch's global RNG, the encoder from its generator
        want = reference_features(ref, x)
        got = enc.passt(x, 3, 2, torch.Generator().manual_seed(7))
        diff_train = (got - want).abs().max().item()
        other = enc.passt(x, 3, 2, torch.Generator().manual_seed(8))
    print(f"\nstride {stride}: max |Δ| eval {diff_eval:.2e}, train with patchout {diff_train:.2e}")
    assert diff_eval < 1e-5 and diff_train < 1e-5
    assert (other - want).abs().max().item() > 1e-3  # another draw drops other patches: the check has teeth


def test_segments_are_averaged_over_the_ones_each_clip_covers_as_the_baseline_does(ref_module):
    """The baseline's rule on durations (≤ 10 s: first segment; ≤ 20 s: two; else three of the 30-s zero-padded
    clip), by hand with hear21passt on floor-padded segments, against the encoder on one padded batch whose padding
    holds junk (it must be ignored)."""
    ref = reference(ref_module, width=64, depth=1)
    enc = encoder_like(ref)
    y = real_waveform()
    clips = [y[:23 * SR], y[:10 * SR], y[:10 * SR + 320], y[:3 * SR], y[5 * SR:5 * SR + 400]]
    x, lengths = mel_batch(clips, pad_value=5.0)
    with torch.no_grad():
        got = enc(x, lengths)
        want = []
        for clip, n in zip(clips, lengths.tolist(), strict=False):
            duration = len(clip) / SR
            k = 1 if duration <= 10 else 2 if duration <= 20 else 3
            padded = torch.full((3000, 128), FLOOR)
            # the clip's own mel (the mel itself is tests/pipeline/test_passt_features.py's)
            padded[:n] = x[len(want), :n]
            segments = padded.view(3, 1000, 128)[:k].transpose(1, 2).unsqueeze(1)  # the ones averaged
            want.append(enc.proj(reference_features(ref, segments).mean(dim=0)))
    diff = (got - torch.stack(want)).abs().max().item()
    print(f"\nsegment averaging vs hear21passt by hand: max |Δ| {diff:.2e}")
    assert [int(np.ceil(n / 1000)) for n in lengths.tolist()] == [3, 1, 2, 1, 1] and diff < 1e-5


def test_cached_mel_segments_are_close_to_the_baselines_per_segment_mel(ref_module):
    """What caching costs: the baseline computes the mel of each 10-s segment of the zero-padded 30-s waveform on
    its own (its own pre-emphasis and reflect padding at the segment edges); the encoder cuts one mel per clip.
    Measured, not hidden: the cosine between the two clip embeddings."""
    ref = reference(ref_module, width=64, depth=1)
    enc = encoder_like(ref)
    clip = real_waveform()[:23 * SR]
    x, lengths = mel_batch([clip])
    wave = np.zeros(30 * SR, np.float32)
    wave[:len(clip)] = clip
    segments = torch.stack([torch.from_numpy(passt_mel(wave[i * 10 * SR:(i + 1) * 10 * SR])) for i in range(3)])
    with torch.no_grad():
        cached = torch.nn.functional.pad(x[0], (0, 0, 0, 3000 - x.shape[1]), value=FLOOR)
        ours = enc.passt(cached.view(3, 1000, 128).transpose(1, 2).unsqueeze(1)).mean(dim=0)
        base = reference_features(ref, segments.transpose(1, 2).unsqueeze(1)).mean(dim=0)
    cosine = torch.nn.functional.cosine_similarity(ours, base, dim=0).item()
    print(f"\ncached clip mel vs per-segment mel (23-s clip): cosine {cosine:.6f}, "
          f"max |Δ| {(ours - base).abs().max().item():.2e} of max |x| {base.abs().max().item():.2f}")
    assert cosine > 0.999


def test_patchout_and_specaugment_follow_the_generator_in_training_only(ref_module):
    ref = reference(ref_module, width=64, depth=1)
    enc = encoder_like(ref, patchout_t=5, patchout_f=2, n_t=2, w_t=40, n_f=1, w_f=8)
    y = real_waveform()
    x, lengths = mel_batch([y[:12 * SR], y[:4 * SR]])
    seen = []
    enc.passt.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    enc.train()
    with torch.no_grad():
        a = enc(x, lengths, torch.Generator().manual_seed(1))
        assert torch.equal(a, enc(x, lengths, torch.Generator().manual_seed(1)))
        assert not torch.allclose(a, enc(x, lengths, torch.Generator().manual_seed(2)))
        segs = seen[0][:, 0].transpose(1, 2)  # (3 segments: clip 0 covers 2, clip 1 one, 1000 frames, 128)
        assert segs.shape == (3, 1000, 128)
        masked = segs == MASK_VALUE  # hear21passt's mask value: log-mel 0 after (x + 4.5) / 5
        assert masked.any(), "stripes are drawn"
        tail = torch.cat([segs[1, lengths[0] - 1000:], segs[2, lengths[1]:]])
        assert (tail == FLOOR).all(), "padding stays silence: stripes stay inside the clips"
        enc.eval()
        e = enc(x, lengths, torch.Generator().manual_seed(1))
        assert torch.equal(e, enc(x, lengths, torch.Generator().manual_seed(2)))
        assert not (seen[-1] == MASK_VALUE).any()


def test_embedding_of_a_clip_does_not_depend_on_its_batch(ref_module):
    enc = encoder_like(reference(ref_module, width=64, depth=1))
    y = real_waveform()
    x, lengths = mel_batch([y[:3 * SR], y[:21 * SR]])
    with torch.no_grad():
        alone = enc(x[:1, :lengths[0]], lengths[:1])
        together = enc(x, lengths)[:1]
    assert (alone - together).abs().max().item() < 1e-5


def test_load_checkpoint_reports_heads_mismatches_and_refuses_what_does_not_fit(ref_module, tmp_path):
    ref = reference(ref_module)
    sd = ref.state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "wrapped.pt")
    enc = encoder_like(ref, copy=False)
    proj_before = enc.proj[0].weight.clone()
    report = enc.load_checkpoint(tmp_path / "wrapped.pt")
    heads = {"head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias", "head_dist.weight", "head_dist.bias"}
    assert set(report["unexpected"]) == heads and report["missing"] == [] and report["mismatched"] == []
    assert len(report["loaded"]) == len(sd) - len(heads) == 7 + 12 * 2 + 2
    own = enc.state_dict()
    assert all(torch.equal(own[f"passt.{k}"], sd[k]) for k in report["loaded"])
    assert torch.equal(enc.proj[0].weight, proj_before), "the projection stays random"

    odd = dict(sd)
    odd["time_new_pos_embed"] = torch.zeros(1, 128, 1, 62)  # a stride-16 table
    del odd["blocks.1.mlp.fc2.bias"]
    torch.save(odd, tmp_path / "odd.pt")
    report = encoder_like(ref, copy=False).load_checkpoint(tmp_path / "odd.pt")
    assert report["mismatched"] == [("time_new_pos_embed", [1, 128, 1, 62], [1, 128, 1, 99])]
    assert report["missing"] == ["blocks.1.mlp.fc2.bias", "time_new_pos_embed"]

    small = PasstEncoder(width=64, depth=1, embed_dim=8)  # every shape differs: nothing fits
    with pytest.raises(ModelLoadError, match=r"odd\.pt: no PaSST keys .* match this model$"):
        small.load_checkpoint(tmp_path / "odd.pt")
    torch.save({"model": {"conv_block1.conv1.weight": torch.zeros(64, 1, 3, 3)}}, tmp_path / "panns.pth")
    with pytest.raises(ModelLoadError, match="no PaSST keys"):
        small.load_checkpoint(tmp_path / "panns.pth")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match=r"junk\.pt: cannot read checkpoint"):
        small.load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ModelLoadError, match=r"nope\.pt: checkpoint not found$"):
        small.load_checkpoint(tmp_path / "nope.pt")


def test_defaults_are_passt_s_and_bad_sizes_are_config_errors():
    cfg = load_config(None, ["audio_encoder=passt", "embed_dim=1024", "projection=linear"])
    with torch.device("meta"):
        enc = build_audio_encoder(cfg, 128)
    shapes = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    assert shapes["passt.patch_embed.proj.weight"] == (768, 1, 16, 16) and len(enc.passt.blocks) == 12
    assert shapes["passt.freq_new_pos_embed"] == (1, 768, 12, 1)
    assert shapes["passt.time_new_pos_embed"] == (1, 768, 1, 99)
    assert enc.passt.blocks[0].attn.heads == 12 and shapes["proj.0.weight"] == (1024, 768)
    assert patch_grid(128, 1000, 16) == (8, 62)
    for bad, message in [("passt_width=100", "not a multiple of 64"), ("passt_stride=12", "not one of 10, 16"),
                         ("segment_seconds=11", "time positions cover 99"),
                         ("segment_seconds=0.1", "shorter than one 16-frame patch"),
                         ("patchout_f=12", "would drop all 12 patch rows")]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, ["audio_encoder=passt", bad])
    with pytest.raises(ConfigError, match="'patchout_t': 15 would drop all 4 patch columns of a 0.5-s segment"):
        load_config(None, ["audio_encoder=passt", "segment_seconds=0.5"])
    load_config(None, ["audio_encoder=cnn10", "segment_seconds=0.5"])  # passt keys do not bind cnn10


@pytest.mark.slow
def test_full_size_passt_s_equals_hear21passt(ref_module, tmp_path):
    """PaSST-S itself (768 wide, 12 blocks, 12 heads, stride 10, patchout 15/2), one real 10-s segment: the size
    the tiny configs stand in for (about 20 s of CPU)."""
    ref = reference(ref_module, width=768, depth=12, patchout=(15, 2))
    torch.save(ref.state_dict(), tmp_path / "passt-s.pt")
    enc = encoder_like(ref, copy=False)
    report = enc.load_checkpoint(tmp_path / "passt-s.pt")
    assert len(report["loaded"]) == 7 + 12 * 12 + 2 and not report["missing"] and not report["mismatched"]
    y = real_waveform()
    x, _ = mel_batch([y[320000:640000]])
    x = x.transpose(1, 2).unsqueeze(1)
    with torch.no_grad():
        diff_eval = (enc.passt(x) - reference_features(ref, x)).abs().max().item()
        ref.train(), enc.train()
        torch.manual_seed(5)
        want = reference_features(ref, x)
        diff_train = (enc.passt(x, 15, 2, torch.Generator().manual_seed(5)) - want).abs().max().item()
    print(f"\nPaSST-S full size: max |Δ| eval {diff_eval:.2e}, train with patchout 15/2 {diff_train:.2e}")
    assert diff_eval < 1e-5 and diff_train < 1e-5


def test_cached_silence_is_the_floor_so_gain_leaves_it_and_padding_is_the_same_in_both_precisions():
    """Digital silence in a float16 PaSST cache is exactly PASST_SCALE.floor: the gain moves sound, not silence, and
    padding written by streamed (float16) and resident (float32) batches is the same number."""
    from audioret.trainer.augment import apply_gain
    from audioret.trainer.data import pad_arrays

    wave = np.concatenate([real_waveform()[:32000], np.zeros(32000, dtype=np.float32)])
    cached = passt_mel(wave).astype(np.float16)  # what prep audio stores
    silent = cached[-50:]
    assert np.all(silent == np.float16(PASST_SCALE.floor))
    x = torch.from_numpy(cached.astype(np.float32))[None]
    out = apply_gain(x, torch.tensor([x.shape[1]]), 6.0, torch.Generator().manual_seed(0), PASST_SCALE)
    assert torch.equal(out[0, -50:], x[0, -50:])  # silence stays silence
    assert not torch.equal(out[0, :50], x[0, :50])  # sound moved
    half, _ = pad_arrays([cached[:10], cached[:20]], 128, np.float16, PASST_SCALE.floor)
    full, _ = pad_arrays([cached[:10], cached[:20]], 128, np.float32, PASST_SCALE.floor)
    assert np.array_equal(half.astype(np.float32), full)

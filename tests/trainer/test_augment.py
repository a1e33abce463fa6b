"""Semantics of the batch augmentations on real log-mels (the paper's gain, Freq-MixStyle, SpecAugment;
trainer/augment.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from audioret.trainer.augment import apply_gain, augment_batch, freq_mixstyle, sample_beta, spec_augment, valid_mask
from support.logmel_batches import FLOOR, real_logmel_batch


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return real_logmel_batch()


def time_stats(x: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-bin mean and unbiased std over the valid frames of one example (written out, not shared)."""
    v = x[:length].double()
    return v.mean(dim=0), v.std(dim=0)


def test_valid_mask() -> None:
    m = valid_mask(torch.tensor([0, 2, 4]), 4)
    assert m.tolist() == [[False] * 4, [True, True, False, False], [True] * 4]


def test_gain_is_exact_per_example_and_only_on_valid_frames(batch) -> None:
    x, lengths = batch
    out = apply_gain(x, lengths, 6.0, gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    gains = []
    for i, n in enumerate(lengths.tolist()):
        assert torch.equal(out[i, n:], x[i, n:]), "padded frames must stay at the floor"
        above = x[i, :n] > FLOOR + 6.0  # far enough above the floor that the clamp cannot act
        delta = (out[i, :n] - x[i, :n])[above]
        g = float(delta.mean())
        assert torch.allclose(delta, torch.full_like(delta, g), atol=1e-4), "one gain per example, all frames"
        assert -6.0 <= g <= 6.0
        expected = torch.where(x[i, :n] > FLOOR, torch.clamp(x[i, :n] + g, min=FLOOR), x[i, :n])
        assert torch.allclose(out[i, :n], expected, atol=1e-4)
        gains.append(g)
    assert len({round(g, 3) for g in gains}) == len(gains), "examples draw independent gains"
    assert float(out.min()) >= FLOOR


def test_gain_clamps_at_floor_and_zero_is_identity() -> None:
    x = torch.full((64, 5, 2), FLOOR + 1.0)
    out = apply_gain(x, torch.full((64,), 5), 6.0, gen(2))
    assert float(out.min()) == FLOOR and float(out.max()) > FLOOR + 1.0  # some gains < −1 dB, some > 0
    assert apply_gain(x, torch.full((64,), 5), 0.0, gen(2)) is x


def test_gain_leaves_digital_silence_at_the_floor() -> None:
    """Zero power scaled is still zero: floor bins inside a clip must not rise with a positive gain."""
    x = torch.full((16, 8, 4), FLOOR)
    x[:, :, 0] = -30.0
    out = apply_gain(x, torch.full((16,), 8), 6.0, gen(3))
    assert bool((out[:, :, 1:] == FLOOR).all())
    assert not torch.equal(out[:, :, 0], x[:, :, 0])


def test_mixstyle_mixes_per_bin_time_statistics_of_a_batch_partner(batch) -> None:
    """Each example's per-bin (mean, std) over its valid frames becomes λ·own + (1−λ)·partner's, λ ≥ ½.

    Statistics taken over frequency (the classic wrong axis) or over padded frames break this identity.
    """
    x, lengths = batch
    out = freq_mixstyle(x, lengths, p=1.0, alpha=0.5, generator=gen(3))
    stats = [time_stats(x[i], n) for i, n in enumerate(lengths.tolist())]
    mixed_any = False
    for i, n in enumerate(lengths.tolist()):
        assert torch.equal(out[i, n:], x[i, n:]), "pads untouched"
        mu_o, sd_o = time_stats(out[i], n)
        best = None
        for j, (mu_j, sd_j) in enumerate(stats):
            mu_i, sd_i = stats[i]
            d = mu_i - mu_j
            lam = 1.0 if float(d.norm()) < 1e-9 else float((mu_o - mu_j) @ d / (d @ d))
            err = max(float((lam * mu_i + (1 - lam) * mu_j - mu_o).abs().max()),
                      float((lam * sd_i + (1 - lam) * sd_j - sd_o).abs().max()))
            if best is None or err < best[0]:
                best = (err, lam, j)
        err, lam, j = best
        assert err < 1e-2, f"example {i}: output statistics are not a mixture of batch statistics"
        assert 0.5 - 1e-6 <= lam <= 1.0 + 1e-6
        mixed_any |= j != i and lam < 0.999
    assert mixed_any


def test_mixstyle_probability_is_per_example_and_p0_is_identity() -> None:
    x = torch.randn(400, 12, 8, generator=gen(4)) * torch.rand(400, 1, 8, generator=gen(5)) * 10
    lengths = torch.full((400,), 12)
    out = freq_mixstyle(x, lengths, p=0.5, alpha=1.0, generator=gen(6))
    changed = (out - x).abs().amax(dim=(1, 2)) > 1e-4
    assert 0.35 < float(changed.float().mean()) < 0.65  # some mixed, some not, within one batch
    assert freq_mixstyle(x, lengths, p=0.0, alpha=1.0, generator=gen(6)) is x


def test_beta_sampler_is_seeded_and_finite_for_tiny_alpha() -> None:
    lam = sample_beta(0.01, 1000, gen(7), torch.device("cpu"))
    assert bool(torch.isfinite(lam).all()) and float(lam.min()) >= 0 and float(lam.max()) <= 1
    assert torch.equal(lam, sample_beta(0.01, 1000, gen(7), torch.device("cpu")))
    assert abs(float(sample_beta(2.0, 4000, gen(8), torch.device("cpu")).mean()) - 0.5) < 0.02
    assert torch.equal(sample_beta(0.0, 3, gen(8), torch.device("cpu")), torch.ones(3))


def _runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, width) of the runs of True in a 1-D bool tensor."""
    runs, start = [], None
    for k, v in enumerate(row.tolist() + [False]):
        if v and start is None:
            start = k
        elif not v and start is not None:
            runs.append((start, k - start))
            start = None
    return runs


def test_spec_augment_stripe_widths_positions_and_identity() -> None:
    b, t, f = 2000, 40, 16
    x = torch.ones(b, t, f)
    out = spec_augment(x, n_t=1, w_t=7, n_f=0, w_f=0, generator=gen(9))
    time_drop = (out == 0).all(dim=2)
    assert torch.equal((out == 0).any(dim=2), time_drop), "time stripes span all mel bins"
    widths, starts = [], []
    for row in time_drop:
        runs = _runs(row)
        assert len(runs) <= 1
        widths += [w for _, w in runs] or [0]
        starts += [s for s, _ in runs]
    assert max(widths) == 7 and min(widths) == 0 and set(widths) == set(range(8))  # U{0..w_t}, inclusive
    assert min(starts) == 0 and max(s + w for s, w in zip(starts, [w for w in widths if w], strict=False)) == t
    out_f = spec_augment(x, n_t=0, w_t=0, n_f=2, w_f=4, generator=gen(10))
    freq_drop = (out_f == 0).all(dim=1)
    assert torch.equal((out_f == 0).any(dim=1), freq_drop)
    per_row = freq_drop.sum(dim=1)
    assert int(per_row.max()) <= 8 and int(per_row.min()) == 0
    assert len({tuple(r.tolist()) for r in freq_drop[:50]}) > 10, "examples draw their own stripes"
    assert spec_augment(x, 0, 10, 0, 10, gen(11)) is x


def test_spec_augment_with_lengths_stays_in_valid_frames() -> None:
    lengths = torch.randint(1, 30, (500,), generator=gen(12))
    out = spec_augment(torch.ones(500, 60, 4), n_t=3, w_t=20, n_f=0, w_f=0, generator=gen(13), lengths=lengths)
    dropped = (out == 0).all(dim=2)
    assert not bool((dropped & ~valid_mask(lengths, 60)).any())
    assert bool(dropped.any())


def test_augment_batch_chain_is_gain_then_mixstyle_and_reproducible(batch) -> None:
    x, lengths = batch
    cfg = SimpleNamespace(g_max=3.0, p_ms=0.8, ms_alpha=0.3)
    out = augment_batch(x, lengths, cfg, gen(14))
    g = gen(14)
    expected = freq_mixstyle(apply_gain(x, lengths, 3.0, g), lengths, 0.8, 0.3, g)
    assert torch.equal(out, expected)
    assert torch.equal(out, augment_batch(x, lengths, cfg, gen(14)))
    assert not torch.equal(out, augment_batch(x, lengths, cfg, gen(15)))
    for i, n in enumerate(lengths.tolist()):
        assert bool((out[i, n:] == FLOOR).all())
    identity = SimpleNamespace(g_max=0, p_ms=0.0, ms_alpha=0.3)
    assert torch.equal(augment_batch(x, lengths, identity, gen(14)), x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augmentations_on_cuda_match_semantics(batch) -> None:
    x, lengths = (t.cuda() for t in batch)
    g = gen(16, "cuda")
    out = augment_batch(x, lengths, SimpleNamespace(g_max=3.0, p_ms=1.0, ms_alpha=0.3), g)
    out = spec_augment(out, 2, 10, 1, 4, g, lengths=lengths)
    assert out.is_cuda and out.shape == x.shape
    pads = ~valid_mask(lengths, x.shape[1])
    assert bool((out[pads] == FLOOR).all())

"""On-the-fly audio augmentations on batches of cached features: gain, Freq-MixStyle, SpecAugment.

Why here and not in the cache: they are cheap and random, so they run on the device per batch while the
expensive, deterministic features stay in immutable shards. Every function is vectorised over the batch, draws
all randomness from an explicit `torch.Generator` (reproducible runs and resumes) and never modifies its input in
place. x is (B, T, F), padding after `lengths[b]` at the feature's floor (its `FeatureScale`,
cache/feature_contract.py). Semantics and order: docs/training.md.
"""
from __future__ import annotations

from typing import Any

import torch

from audioret.cache.feature_contract import DB_SCALE, FeatureScale


def valid_mask(lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """(B, T) bool, True on the first `lengths[b]` frames of each example: the frames that hold real audio."""
    frames = torch.arange(n_frames, device=lengths.device)
    return frames.unsqueeze(0) < lengths.to(frames.device).unsqueeze(1)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def apply_gain(x: torch.Tensor, lengths: torch.Tensor, g_max: float,
               generator: torch.Generator | None = None, scale: FeatureScale = DB_SCALE) -> torch.Tensor:
    """Random gain g ~ U(−g_max, g_max) dB per example, added to the valid frames only.

    Why this is exact: scaling a waveform by 10^(g/20) scales its power spectrogram by 10^(g/10), i.e. adds g to a dB
    log-mel; only the 1e-10 floor does not move: bins at −100 dB stay there, others clamp at −100 dB. Padded frames
    stay at the floor so masks and padding semantics survive. g_max ≤ 0 returns x unchanged (and draws nothing). Other
    features (`scale`) move by g·scale.per_db and clamp at scale.floor.
    """
    if g_max <= 0:
        return x
    b, t, _ = x.shape
    lengths = lengths.to(x.device)
    gain = (_uniform((b,), generator, x.device) * 2.0 - 1.0) * g_max
    shifted = torch.clamp(x + (gain * scale.per_db).to(x.dtype).view(b, 1, 1), min=scale.floor)
    # Bins at the floor are digital silence (power < 1e-10): scaling zero stays zero, so they do not move.
    movable = valid_mask(lengths, t).unsqueeze(-1) & (x > scale.floor)
    return torch.where(movable, shifted, x)


def sample_beta(alpha: float, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """n draws of Beta(α, α) from `generator` (torch.distributions.Beta cannot take one).

    Uses the Dirichlet sampler, which keeps small α (≈0.01) finite where a ratio of two Gammas would give 0/0.
    α ≤ 0 is the degenerate limit Beta(0, 0) ∈ {0, 1}; it returns 1 (no mixing after max(λ, 1−λ)).
    """
    if alpha <= 0:
        return torch.ones(n, device=device)
    conc = torch.full((n, 2), float(alpha), device=device)
    lam = torch._sample_dirichlet(conc, generator=generator)[:, 0]
    return torch.where(torch.isfinite(lam), lam, torch.ones_like(lam))


def freq_mixstyle(x: torch.Tensor, lengths: torch.Tensor, p: float, alpha: float,
                  generator: torch.Generator | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Freq-MixStyle (Kim et al.; CP-JKU DCASE 2022): mix per-mel-bin statistics with a random partner.

    Statistics are per example and per mel bin, taken over the *time* axis (dim 1 of (B, T, F), i.e. dim=[1, 2] of
    (B, 1, T, F)) on valid frames only, so padding does not drag the mean towards −100 dB; they are detached (no
    gradient through the style). λ ~ Beta(α, α), λ = max(λ, 1 − λ) so the example keeps the larger weight; the
    partner comes from a random permutation of the batch; each example is mixed with probability p (the paper's
    per-example rule; the reference code decides once per batch). The std is the unbiased one (torch.var default,
    as in the reference code). Valid frames are not clamped at the floor (the result is a style, not a
    spectrogram); padded frames are returned untouched. p ≤ 0 returns x unchanged (and draws nothing).
    """
    if p <= 0:
        return x
    b, t, _ = x.shape
    device = x.device
    lengths = lengths.to(device)
    apply = _uniform((b,), generator, device) < p
    lam = sample_beta(alpha, b, generator, device)
    lam = torch.maximum(lam, 1.0 - lam).view(b, 1, 1)
    perm = torch.randperm(b, generator=generator, device=device)

    mask = valid_mask(lengths, t)
    weights = mask.to(torch.float32).unsqueeze(1)  # (B, 1, T): time sums as one batched matmul each
    n = weights.sum(dim=2, keepdim=True)  # (B, 1, 1)
    mu = torch.bmm(weights, x.detach().float()) / n.clamp(min=1.0)  # (B, 1, F)
    centred = x.float() - mu  # two-pass variance: no cancellation on dB values around −40
    var = torch.bmm(weights, centred.detach().square()) / (n - 1.0).clamp(min=1.0)
    sig = (var + eps).sqrt()

    mu_mix = lam * mu + (1.0 - lam) * mu[perm]
    sig_mix = lam * sig + (1.0 - lam) * sig[perm]
    mixed = torch.addcmul(mu_mix, centred, sig_mix / sig).to(x.dtype)
    keep = mask.unsqueeze(-1) & apply.view(b, 1, 1)
    return torch.where(keep, mixed, x)


def _stripe_mask(n_stripes: int, max_width: int, extent: torch.Tensor, size: int,
                 generator: torch.Generator | None) -> torch.Tensor:
    """(B, size) bool: n_stripes stripes per row, width U{0..max_width}, start uniform so the stripe fits in
    [0, extent[b]). Rows draw independently; stripes may overlap (as in PANNs/torchlibrosa)."""
    b = extent.shape[0]
    device = extent.device
    width = torch.randint(0, max_width + 1, (b, n_stripes), generator=generator, device=device)
    width = torch.minimum(width, extent.view(b, 1))
    room = (extent.view(b, 1) - width + 1).clamp(min=1)  # number of possible start positions
    start = (_uniform((b, n_stripes), generator, device) * room).long().clamp(max=room - 1)
    pos = torch.arange(size, device=device).view(1, 1, size)
    inside = (pos >= start.unsqueeze(-1)) & (pos < (start + width).unsqueeze(-1))
    return inside.any(dim=1)


def spec_augment(x: torch.Tensor, n_t: int, w_t: int, n_f: int, w_f: int,
                 generator: torch.Generator | None = None, lengths: torch.Tensor | None = None,
                 fill: float = 0.0) -> torch.Tensor:
    """SpecAugment without time warping, per example: n_t time stripes of width U{0..w_t} and n_f frequency
    stripes of width U{0..w_f}, uniform start, filled with `fill` (0).

    Meant for the output of bn0 (PANNs order), where 0 is the per-bin mean, so the fill is neutral (PaSST fills
    its mel with hear21passt's mask value instead, trainer/encoders/passt.py). With `lengths`
    the time stripes start inside each example's valid frames (a short, padded clip still gets masked where its
    audio is); without it they are placed over the whole padded width, as in torchlibrosa.
    """
    b, t, f = x.shape
    do_t, do_f = n_t > 0 and w_t > 0, n_f > 0 and w_f > 0
    if not (do_t or do_f):
        return x
    drop = torch.zeros(b, 1, 1, dtype=torch.bool, device=x.device)
    if do_t:
        extent = torch.full((b,), t, device=x.device) if lengths is None else lengths.to(x.device).clamp(0, t)
        drop = drop | _stripe_mask(n_t, w_t, extent.long(), t, generator).unsqueeze(-1)
    if do_f:
        extent = torch.full((b,), f, device=x.device, dtype=torch.long)
        drop = drop | _stripe_mask(n_f, w_f, extent, f, generator).unsqueeze(1)
    return x.masked_fill(drop, fill)


def augment_batch(x: torch.Tensor, lengths: torch.Tensor, cfg: Any,
                  generator: torch.Generator | None = None, scale: FeatureScale = DB_SCALE) -> torch.Tensor:
    """The batch-level chain before the model: gain → Freq-MixStyle.

    `cfg` is any object with attributes `g_max`, `p_ms`, `ms_alpha` (the TrainConfig fits). SpecAugment is not
    applied here: it belongs after bn0 inside `AudioEncoder`.
    """
    x = apply_gain(x, lengths, float(cfg.g_max), generator, scale)
    return freq_mixstyle(x, lengths, float(cfg.p_ms), float(cfg.ms_alpha), generator)

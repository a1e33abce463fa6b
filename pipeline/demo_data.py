"""A small synthetic captioned dataset in Clotho layout, for `make demo` and end-to-end tests.

Why synthetic: the demo must run offline in minutes on a laptop CPU and still show that the whole chain learns
something real. Each clip mixes two sound events (beep, chirp, noise, clicks) with a pitch, a rhythm and a
loudness, and its five captions describe both in varied words, so retrieval is compositional and beating chance
is earned. Deterministic by seed:

    python -m audioret.cli.demo_data --out demo/data --seed 0
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from audioret.pipeline.datasets import CLOTHO_SPLITS

SR = 32000
KINDS = ("beep", "chirp", "noise", "clicks")
NOUNS = {"beep": ("beep", "tone"), "chirp": ("chirp", "sweep"), "noise": ("noise", "hiss"),
         "clicks": ("clicking", "ticking")}
VERBS = {  # rhythm → phrases; "pulsed" repeats in bursts, "steady" goes on without a break
    ("beep", "pulsed"): ("repeats", "beeps on and off", "pulses"),
    ("beep", "steady"): ("holds steadily", "drones on", "sounds without a break"),
    ("chirp", "pulsed"): ("chirps again and again", "repeats quickly", "keeps chirping"),
    ("chirp", "steady"): ("rises slowly", "glides upward", "sweeps up once"),
    ("noise", "pulsed"): ("comes in bursts", "puffs on and off", "bursts repeatedly"),
    ("noise", "steady"): ("hums", "rushes steadily", "goes on constantly"),
    ("clicks", "pulsed"): ("ticks fast", "rattles quickly", "clicks rapidly"),
    ("clicks", "steady"): ("ticks slowly", "clicks slowly", "taps at a slow pace"),
}
PITCH = {"high": ("high", "high pitched", "shrill"), "low": ("low", "deep", "low pitched")}
LOUD = {"loud": ("loud", "strong"), "quiet": ("quiet", "soft", "faint")}
JOINS = ("while", "as", "and", "and meanwhile")


@dataclass(frozen=True)
class Event:
    kind: str
    pitch: str
    rhythm: str
    loudness: str


def _gate(n: int, rate: float, duty: float, phase: float) -> np.ndarray:
    t = np.arange(n) / SR
    return (((t * rate + phase) % 1.0) < duty).astype(np.float32)


def _smooth(x: np.ndarray, ms: float = 5.0) -> np.ndarray:
    k = max(1, int(SR * ms / 1000))
    return np.convolve(x, np.ones(k, dtype=np.float32) / k, mode="same")


def _bandpass_noise(n: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spec[(freqs < lo) | (freqs > hi)] = 0
    out = np.fft.irfft(spec, n).astype(np.float32)
    return out / (np.abs(out).max() + 1e-9)


def render_event(ev: Event, n: int, rng: np.random.Generator) -> np.ndarray:
    """One event's waveform (peak ≈ 1 before loudness), pitch/rhythm as its caption says."""
    t = np.arange(n, dtype=np.float64) / SR
    high = ev.pitch == "high"
    phase = rng.random()
    if ev.kind == "beep":
        f = rng.uniform(1800, 3200) if high else rng.uniform(180, 400)
        x = np.sin(2 * np.pi * f * t).astype(np.float32)
        if ev.rhythm == "pulsed":
            x *= _smooth(_gate(n, rng.uniform(3, 5), 0.45, phase))
    elif ev.kind == "chirp":
        f0 = rng.uniform(1500, 2500) if high else rng.uniform(150, 300)
        if ev.rhythm == "pulsed":
            period = 1 / rng.uniform(3, 5)
            tau = (t + phase * period) % period
            x = np.sin(2 * np.pi * f0 * (tau + tau ** 2 / period)).astype(np.float32)  # f0 → 3·f0 per period
            x *= _smooth(_gate(n, 1 / period, 0.8, phase))
        else:
            dur = n / SR
            x = np.sin(2 * np.pi * f0 * (t + t ** 2 / dur)).astype(np.float32)  # f0 → 3·f0 over the clip
    elif ev.kind == "noise":
        lo, hi = (4000, 9000) if high else (80, 500)
        x = _bandpass_noise(n, lo, hi, rng)
        if ev.rhythm == "pulsed":
            x *= _smooth(_gate(n, rng.uniform(2, 4), 0.4, phase), 10)
    else:  # clicks: short decaying resonances, fast or slow
        rate = rng.uniform(9, 14) if ev.rhythm == "pulsed" else rng.uniform(1.5, 2.5)
        f = rng.uniform(3000, 5000) if high else rng.uniform(150, 350)
        k = np.arange(int(0.03 * SR)) / SR
        click = (np.sin(2 * np.pi * f * k) * np.exp(-k * (250 if high else 120))).astype(np.float32)
        pulses = np.zeros(n, dtype=np.float32)
        pulses[(np.arange(0, n / SR, 1 / rate) + phase / rate).__mul__(SR).astype(int).clip(0, n - 1)] = 1
        x = np.convolve(pulses, click)[:n]
    amp = rng.uniform(0.4, 0.6) if ev.loudness == "loud" else rng.uniform(0.05, 0.09)
    return (amp * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def caption(events: tuple[Event, Event], rng: np.random.Generator) -> str:
    """One phrasing of the two events, e.g. "a quiet high beep repeats while deep noise hums"."""
    parts = []
    for ev in (events if rng.random() < 0.5 else events[::-1]):
        words = [rng.choice(PITCH[ev.pitch]), rng.choice(NOUNS[ev.kind])]
        if rng.random() < 0.6:
            words.insert(0, rng.choice(LOUD[ev.loudness]))
        parts.append(f"{' '.join(words)} {rng.choice(VERBS[(ev.kind, ev.rhythm)])}")
    text = f"a {parts[0]} {rng.choice(JOINS)} a {parts[1]}"
    return text[0].upper() + text[1:] + "."


def random_events(rng: np.random.Generator) -> tuple[Event, Event]:
    kinds = rng.choice(len(KINDS), size=2, replace=False)
    return tuple(Event(KINDS[k], rng.choice(("high", "low")), rng.choice(("pulsed", "steady")),
                       rng.choice(("loud", "quiet"))) for k in kinds)  # type: ignore[return-value]


def generate(out: str | Path, n_clips: tuple[int, int, int] = (240, 60, 60), seconds: float = 3.0,
             seed: int = 0, captions_per_clip: int = 5) -> dict[str, int]:
    """Write `out/{development,validation,evaluation}/*.wav` and `out/clotho_captions_<split>.csv`.

    Returns clips per split. Re-running with the same arguments rewrites byte-identical files.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    counts = {}
    for split, count in zip(CLOTHO_SPLITS, n_clips, strict=False):
        (out / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(count):
            events = random_events(rng)
            wave = sum(render_event(ev, n, rng) for ev in events)
            wave = wave + 0.002 * rng.standard_normal(n).astype(np.float32)
            name = f"{split[:3]}_{i:04d}.wav"
            sf.write(out / split / name, np.clip(wave, -1, 1), SR, subtype="PCM_16")
            caps, tries = [], 0
            while len(caps) < captions_per_clip:  # distinct phrasings where the vocabulary allows
                c = caption(events, rng)
                tries += 1
                if c not in caps or tries > 50:
                    caps.append(c)
            rows.append([name, *caps])
        with open(out / f"clotho_captions_{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file_name", *[f"caption_{k + 1}" for k in range(captions_per_clip)]])
            w.writerows(rows)
        counts[split] = count
    return counts

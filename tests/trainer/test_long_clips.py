"""Long clips embed in bounded pieces (trainer/encoders/long_clips.py): clips up to the chunk exactly as before, a
longer one by the documented rule (CNN10: the piece-weighted mean of the pooled features; PaSST: the same
embedding as in one piece), and a 3-minute clip in no more memory than a 30-s one. Features are the project's own
on real recordings (tests/data/audio), repeated to the length a test needs."""
from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audioret.trainer.encoders.cnn10 import CHUNK_FRAMES, AudioEncoder
from audioret.trainer.encoders.long_clips import LongInputs, length_batches, pieces
from audioret.trainer.encoders.passt import PasstEncoder
from audioret.trainer.evaluate import embed_arrays
from support import AUDIO, REPO, cli_env

CPU = torch.device("cpu")


class AudioOnly(nn.Module):
    """What embed_arrays needs of a model: its audio tower (no text model to load); `encode_audio` as BiEncoder's
    (the embedding function before long clips were cut into pieces called it)."""

    def __init__(self, audio: nn.Module) -> None:
        super().__init__()
        self.audio = audio

    def encode_audio(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.audio(x, lengths), dim=-1)


@functools.lru_cache(maxsize=None)
def real_waveform(seconds: float, rate: int = 32000) -> np.ndarray:
    """The animal recordings one after the other, repeated to `seconds` (32 kHz mono)."""
    from audioret.pipeline.audio_io import load_mono

    y = np.concatenate([load_mono(p, on_message=lambda m: None) for p in sorted((AUDIO / "animals_cc0").glob("*.mp3"))])
    return np.tile(y, int(np.ceil(seconds * rate / len(y))))[:int(seconds * rate)]


def features(seconds: float, kind: str = "panns") -> np.ndarray:
    from audioret.pipeline.feature_defs import feature_definition

    return feature_definition(kind).compute(real_waveform(seconds)).astype(np.float16)


def short_clips() -> list[np.ndarray]:
    from audioret.pipeline.audio_io import file_log_mel

    names = ["animals_cc0/dog.mp3", "animals_cc0/sheep.mp3", "sonic_pi_cc0/elec_beep.flac",
             "fsdd_ccbysa/0_george_0.wav"]
    return [file_log_mel(AUDIO / n).astype(np.float16) for n in names] + [features(30.0)]


def cnn10() -> AudioEncoder:
    torch.manual_seed(0)
    return AudioEncoder(width=0.25, embed_dim=32).eval()


def test_pieces_are_near_equal_aligned_and_bounded() -> None:
    assert pieces(CHUNK_FRAMES, LongInputs(CHUNK_FRAMES)) == [(0, CHUNK_FRAMES)]  # a 30-s clip stays whole
    assert pieces(7000, LongInputs(3001)) == [(0, 2333), (2333, 4666), (4666, 7000)]
    passt = pieces(60001, LongInputs(3000, align=1000))  # 10 min: 61 segments in 21 pieces, cut at segments
    assert len(passt) == 21 and all(s % 1000 == 0 and e - s <= 3000 for s, e in passt) and passt[-1][1] == 60001
    assert pieces(60001, LongInputs(read_frames=1024)) == [(0, 1024)]  # AST: the rest is never read
    assert [b.tolist() for b in length_batches([5, 900, 40, 3000, 3000], 2, 1000)] == [[3], [4], [1, 2], [0]]


def test_clips_up_to_the_chunk_embed_exactly_as_one_padded_batch() -> None:
    clips, enc = short_clips(), cnn10()
    longest = max(c.shape[0] for c in clips)
    x = torch.full((len(clips), longest, 64), -100.0)
    for i, c in enumerate(clips):
        x[i, :c.shape[0]] = torch.from_numpy(c.astype(np.float32))
    lengths = torch.tensor([c.shape[0] for c in clips])
    with torch.no_grad():
        expected = nn.functional.normalize(enc(x, lengths), dim=-1)
    assert torch.equal(embed_arrays(AudioOnly(enc), clips, CPU, 64), expected)


def test_long_cnn10_clip_is_the_weighted_mean_of_its_pieces_pooled() -> None:
    clip, enc = features(75.0), cnn10()  # 7501 frames → 3 pieces of 2500-2501
    ranges = pieces(clip.shape[0], enc.long_inputs)
    assert [e - s for s, e in ranges] == [2500, 2500, 2501]
    with torch.no_grad():
        pooled = [enc.pooled(torch.from_numpy(clip[s:e].astype(np.float32))[None], torch.tensor([e - s]))[0]
                  for s, e in ranges]
        mean = sum((e - s) * p.double() for (s, e), p in zip(ranges, pooled, strict=False)) / clip.shape[0]
        expected = nn.functional.normalize(enc.head(mean.float()[None]), dim=-1)[0]
        whole = nn.functional.normalize(enc(torch.from_numpy(clip.astype(np.float32))[None],
                                            torch.tensor([clip.shape[0]])), dim=-1)[0]
    for batch in (1, 64):  # pieces share a batch or not: the same embedding
        got = embed_arrays(AudioOnly(enc), [features(3.0), clip], CPU, batch)[1]
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert float(got @ whole) > 0.95  # a rule close to the whole-clip embedding, not the same numbers
    assert not torch.allclose(got, whole, atol=1e-4)


def test_long_passt_clip_embeds_as_in_one_piece() -> None:
    torch.manual_seed(0)
    enc = PasstEncoder(width=64, depth=1, stride=16, embed_dim=16, projection="mlp").eval()
    clip = features(75.0, "passt")  # 8 segments (the last one partly) → pieces of 2, 3 and 3 segments
    assert pieces(clip.shape[0], enc.long_inputs) == [(0, 2000), (2000, 5000), (5000, clip.shape[0])]
    with torch.no_grad():
        whole = nn.functional.normalize(enc(torch.from_numpy(clip.astype(np.float32))[None],
                                            torch.tensor([clip.shape[0]])), dim=-1)[0]
    got = embed_arrays(AudioOnly(enc), [clip, features(4.0, "passt")], CPU, 2)[0]
    torch.testing.assert_close(got, whole, atol=2e-6, rtol=1e-5)


MEMORY_CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np, torch
    from torch import nn
    from audioret.trainer.encoders.cnn10 import AudioEncoder
    from audioret.trainer.evaluate import embed_arrays

    class AudioOnly(nn.Module):
        def __init__(self, audio):
            super().__init__()
            self.audio = audio

        def encode_audio(self, x, lengths):
            return nn.functional.normalize(self.audio(x, lengths), dim=-1)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    clip = np.load(sys.argv[1])
    model = AudioOnly(AudioEncoder(width=0.25, embed_dim=32))
    embed_arrays(model, [clip[:3001]], torch.device("cpu"), 4)  # a 30-s clip: the peak to compare with
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    embed_arrays(model, [clip], torch.device("cpu"), 4)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
""")


def test_three_minute_clip_embeds_in_the_memory_of_a_30_s_one(tmp_path: Path) -> None:
    """Peak RSS (getrusage, in a fresh process) while embedding a 3-minute clip, above the peak of embedding its
    first 30 s, with batch size 4. Measured here: 22-34 MB; embedded whole (the code before), 184 MB."""
    np.save(tmp_path / "clip.npy", features(180.0))
    proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(tmp_path / "clip.npy")], capture_output=True,
                          text=True, timeout=300, env=cli_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    growth_mb = float(proc.stdout.split()[-1])
    assert growth_mb < 80, f"peak RSS grew by {growth_mb:.0f} MB"


def test_chunk_must_be_a_positive_multiple_of_align() -> None:
    for chunk in (1500, -3):
        with pytest.raises(ValueError, match="positive multiple"):
            LongInputs(chunk_frames=chunk, align=1000 if chunk > 0 else 1)

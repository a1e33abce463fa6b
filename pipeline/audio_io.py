"""Decoding and resampling: any file soundfile reads, any rate, any channel count → mono at the feature's rate.

Errors are `AudioDecodeError` with a one-line message, so `prep audio` lists the file and carries on. It streams
(recordings can be an hour long: read in blocks, resampled block by block); it captures the decoder's stderr
(libsndfile prints warnings from C without a file name; each comes back through `on_message` naming its file); it
checks what it decoded (a truncated file or NaN samples are never cached). Details: docs/data.md.
"""
from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from audioret.pipeline.features import DEFAULT_CONFIG, LogMelConfig

BLOCK_FRAMES = 1 << 21  # frames per read (47 s at 44.1 kHz): a block costs BLOCK_FRAMES × channels × 4 bytes
#: A sample this large is corrupt data, not audio (float WAVs scaled like int16 reach 32768; 1e30 overflows the
#: power spectrum into NaN).
MAX_ABS_SAMPLE = 1e6
_STREAMING_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}  # WAV data sizes streaming writers leave in the header on purpose
_WAV_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_MP3_FRAME = 1152
T = TypeVar("T")


_STDERR_LOCK = threading.Lock()
_SCRATCH: dict[int, "object"] = {}  # pid → scratch file receiving fd 2 during libsndfile calls
_C_PREFIX = re.compile(r"^\[[^\]]*\]\s*")  # mpg123's "[src/libmpg123/id3.c:INT123_parse_new_id3():950] "
_LEVEL = re.compile(r"^(warning|note|error)\s*:\s*", re.IGNORECASE)
MessageSink = Callable[[str], None]


def _decoder_lines(raw: bytes) -> list[str]:
    """The decoder's messages without its source-location prefix or its own "warning:" label."""
    lines = (_LEVEL.sub("", _C_PREFIX.sub("", x.strip())) for x in raw.decode("utf-8", "replace").splitlines())
    return [x for x in lines if x]


def _scratch():
    f = _SCRATCH.get(os.getpid())
    if f is None:  # one per process: a forked child must not share its parent's file offset
        _SCRATCH.clear()
        f = _SCRATCH[os.getpid()] = tempfile.TemporaryFile()
    return f


def call_capturing_stderr(fn: Callable[[], T], on_message: MessageSink) -> T:
    """`fn()` with file descriptor 2 redirected; each line C code printed there goes to `on_message` afterwards
    (also when `fn` raises). Python's own sys.stderr is flushed first so none of its text is taken."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, AttributeError, ValueError):  # no usable fd 2 (closed, or no sys.stderr): nothing to catch
            return fn()
        sink = _scratch()
        os.dup2(sink.fileno(), 2)
        try:
            return fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            raw = sink.read()
            sink.seek(0)
            sink.truncate()
            for line in _decoder_lines(raw):
                on_message(line)


class AudioDecodeError(Exception):
    """A file that cannot become a waveform: unreadable, not audio, empty, truncated or corrupt."""


def decoder_versions() -> dict:
    """Versions of everything between the file and the waveform; part of the audio cache key."""
    import scipy
    import soundfile
    import soxr

    return {
        "soundfile": soundfile.__version__,
        "libsndfile": soundfile.__libsndfile_version__,
        "soxr": soxr.__version__,
        "scipy": scipy.__version__,  # scipy.fft computes the STFT (pipeline/features.py)
    }


def _mp3_has_length_tag(path: Path) -> bool:
    """True when the MP3's first frame carries a Xing/Info/VBRI header, i.e. its declared length is exact rather
    than mpg123's estimate from the file size (which can be far off for VBR files and must not be trusted)."""
    with open(path, "rb") as f:
        head = f.read(10)
        skip = 0
        if head[:3] == b"ID3" and len(head) == 10:
            skip = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | head[9] & 0x7F)
            skip += 10 if head[5] & 0x10 else 0  # footer present
        f.seek(skip)
        first = f.read(4096)
    return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))


def _check_complete(path: Path, sf_file, decoded: int) -> None:
    """Raise if the container says more audio exists than was decoded (a truncated download or copy)."""
    fmt = sf_file.format
    if fmt in ("WAV", "WAVEX"):
        # libsndfile shrinks `frames` to the bytes present and notes the header's claim in its log.
        m = _WAV_DATA_SIZE.search(sf_file.extra_info)
        if m:
            claimed, present = int(m.group(1)), int(m.group(2))
            frame_bytes = max(1, sf_file.channels * _bytes_per_sample(sf_file.subtype))
            if claimed not in _STREAMING_SIZES and claimed - present >= frame_bytes:
                raise AudioDecodeError(f"truncated: header declares {claimed} data bytes, file holds {present}")
        return
    declared = sf_file.frames
    if declared <= 0 or declared >= 2**62:  # unknown length (streams)
        return
    tolerance = 0
    if fmt == "MP3":
        if not _mp3_has_length_tag(path):
            return
        tolerance = max(2 * _MP3_FRAME, declared // 100)  # encoder delay/padding bookkeeping varies by encoder
    if declared - decoded > tolerance:
        rate = sf_file.samplerate
        raise AudioDecodeError(f"truncated or corrupt: decoded {decoded / rate:.2f} s of the "
                               f"{declared / rate:.2f} s its header declares")


def _bytes_per_sample(subtype: str) -> int:
    return {"PCM_U8": 1, "PCM_S8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4,
            "DOUBLE": 8}.get(subtype, 1)


def _sane_block(y: np.ndarray) -> None:
    if not np.all(np.isfinite(y)):
        raise AudioDecodeError("decoded samples contain NaN or inf")
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > MAX_ABS_SAMPLE:
        raise AudioDecodeError(f"sample magnitude {peak:.3g} is not audio (corrupt float data?)")


def _decode(path: Path, config: LogMelConfig, on_message: MessageSink) -> np.ndarray:
    """Stream-decode, mix to mono and resample block by block; raise AudioDecodeError on anything wrong."""
    import soundfile

    parts: list[np.ndarray] = []
    with call_capturing_stderr(lambda: soundfile.SoundFile(str(path)), on_message) as f:
        rate, channels = f.samplerate, f.channels
        stream = None
        if rate != config.sample_rate and config.resampler.startswith("soxr"):
            import soxr

            stream = soxr.ResampleStream(rate, config.sample_rate, 1, dtype="float32", quality=config.resampler)
        if f.seekable():  # as soundfile.read does: mpg123 then decodes bit-identically to a whole-file read
            call_capturing_stderr(lambda: f.seek(0), on_message)
        decoded = 0
        while True:
            block = call_capturing_stderr(lambda: f.read(BLOCK_FRAMES, dtype="float32", always_2d=True), on_message)
            if block.shape[0] == 0:
                break
            y = block.mean(axis=1) if channels > 1 else block[:, 0].copy()
            _sane_block(y)
            decoded += y.shape[0]
            parts.append(stream.resample_chunk(y) if stream is not None else y)
        if decoded == 0:
            raise AudioDecodeError("zero-length audio (no samples: empty, truncated or corrupt stream)")
        _check_complete(path, f, decoded)
    if stream is not None:
        parts.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    y = np.concatenate(parts) if len(parts) > 1 else parts[0]
    del parts
    if rate == config.sample_rate:
        return y
    if stream is None:  # a non-soxr resampler in a custom config: one-shot through librosa
        import librosa

        return librosa.resample(y, orig_sr=rate, target_sr=config.sample_rate, res_type=config.resampler)
    # librosa.resample's length rule (fix_length to ceil(n × ratio)), so streaming matches it sample for sample.
    want = int(np.ceil(decoded * float(config.sample_rate) / rate))
    if y.shape[0] != want:
        y = np.pad(y, (0, want - y.shape[0])) if y.shape[0] < want else y[:want]
    return y


def print_decoder_message(path: str | Path) -> MessageSink:
    """The default `on_message`: `warning: <path>: <message>` on stderr."""
    return lambda message: print(f"warning: {path}: {message}", file=sys.stderr, flush=True)


def load_mono(path: str | Path, config: LogMelConfig = DEFAULT_CONFIG,
              on_message: MessageSink | None = None) -> np.ndarray:
    """Decode `path`, average the channels and resample to `config.sample_rate` with `config.resampler`.
    The decoder's own warnings go to `on_message` (default: `warning: <path>: ...` on stderr)."""
    import soundfile

    path = Path(path)
    on_message = on_message or print_decoder_message(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise AudioDecodeError("not a regular file")
        if st.st_size == 0:
            raise AudioDecodeError("empty file (0 bytes)")
    except FileNotFoundError:
        raise AudioDecodeError("file not found") from None
    except PermissionError:
        raise AudioDecodeError("permission denied") from None
    try:
        y = _decode(path, config, on_message)
    except AudioDecodeError:
        raise
    except FileNotFoundError:
        raise AudioDecodeError("file not found") from None
    except PermissionError:
        raise AudioDecodeError("permission denied") from None
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        msg = msg.replace(f"Error opening {str(path)!r}: ", "")  # the caller names the file already
        if "not a regular file" in msg or msg.startswith("Format not recognised"):
            msg = "format not recognised (not audio, or a codec libsndfile lacks such as AAC/M4A/WMA)"
        raise AudioDecodeError(f"cannot decode: {msg}") from None
    return np.ascontiguousarray(y, dtype=np.float32)


def file_log_mel(path: str | Path, config: LogMelConfig = DEFAULT_CONFIG,
                 on_message: MessageSink | None = None) -> np.ndarray:
    """Decode + resample + log-mel for one file: the whole per-clip feature path, float32 (frames, n_mels)."""
    from audioret.pipeline.features import log_mel_chunked

    return log_mel_chunked(load_mono(path, config, on_message), config)

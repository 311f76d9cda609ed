"""Audio in: decode anything libsndfile reads, downmix to mono, resample to 16 kHz, validate.

Decoding is streamed block by block, so a 3-hour 44.1 kHz stereo file never exists in memory at its source
rate: ``load_audio`` keeps only the 16 kHz mono result (about 230 MB per hour as float32), and ``stream_audio``
not even that (one 30 s window at a time, for ``SpeechLM.encode`` of a path). Nothing is ever truncated.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechpress.errors import AudioError

SAMPLE_RATE = 16000
_BLOCK_SECONDS = 20
_FD2_LOCK = threading.Lock()


@dataclass
class Audio:
    """Mono float32 samples at ``sample_rate`` and where they came from."""

    samples: np.ndarray
    sample_rate: int
    source: str
    source_sample_rate: int
    source_channels: int
    source_format: str

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass
class AudioInfo:
    """What `speechpress info` reports, measured by decoding the whole file without keeping it."""

    path: str
    duration: float
    sample_rate: int
    channels: int
    format: str
    subtype: str
    frames: int


def _quietly(call, *args, **kwargs):
    """``call(*args, **kwargs)`` with file descriptor 2 caught: libsndfile's MPEG decoder (mpg123) prints its
    notes there ("Note: Illegal Audio-MPEG-Header ...", "error: dequantization failed!"), past Python, and the
    CLI promises one line. Returns (result, notes); an exception carries the notes as ``decoder_notes``."""
    sys.stderr.flush()
    with _FD2_LOCK:  # two threads swapping fd 2 at once could leave it pointing at a closed file
        try:
            saved = os.dup(2)
        except OSError:  # no file descriptor 2 to guard
            return call(*args, **kwargs), []
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                result = call(*args, **kwargs)
            except BaseException as err:
                err.decoder_notes = _notes(sink, saved)
                raise
            return result, _notes(sink, saved)


def _notes(sink, saved: int) -> list[str]:
    os.dup2(saved, 2)
    os.close(saved)
    sink.seek(0)
    lines = sink.read().decode("utf-8", "replace").splitlines()
    # "Note: X" and "[src/libmpg123/parse.c:wetwork():1349] error: X" -> "X"
    return [re.sub(r"^(\[[^\]]*\]\s*)?(note|error|warning):\s*", "", line.strip(), flags=re.I) for line in lines if line.strip()]


def _reason(err: Exception) -> str:
    """The decoder's first note when it left one: libsndfile then reports a failed MPEG open as "File does not
    exist or is not a regular file", never the reason here (that was checked), and a failed read as an
    "Unspecified internal error"."""
    notes = getattr(err, "decoder_notes", None)
    if notes:
        return f"decoder: {notes[0]}"
    text = str(err)
    if "does not exist or is not a regular file" in text:
        return "not audio in any format libsndfile reads, or its header is corrupt"
    return text


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: empty file (0 bytes)")
    return p


def _open(path: str | os.PathLike) -> sf.SoundFile:
    p = _check_file(path)
    try:
        f, _ = _quietly(sf.SoundFile, str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{p}: cannot decode as audio ({_reason(err)})") from None
    if f.format == "WAV":
        try:
            _check_riff_size(p)
        except AudioError:
            f.close()
            raise
    return f


def _check_riff_size(path: str | os.PathLike) -> None:
    """A WAV cut short still decodes (libsndfile trusts the bytes it finds); its header says how many it should have."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            chunk = fh.read(8)
            ident, length = chunk[:4], int.from_bytes(chunk[4:8], "little")
            if ident == b"data":
                if length not in (0, 0xFFFFFFFF) and offset + 8 + length > size:
                    raise AudioError(
                        f"{path}: truncated WAV: header declares {length} data bytes, file holds {size - offset - 8}"
                    )
                return
            offset += 8 + length + (length & 1)


def _stream_mono(f: sf.SoundFile, path: str):
    """Yield mono float32 blocks, checking every sample is finite and the file is complete."""
    declared = f.frames
    read = 0
    block = max(1, f.samplerate * _BLOCK_SECONDS)
    try:
        while True:
            data, _ = _quietly(f.read, block, dtype="float32", always_2d=True)
            if len(data) == 0:
                break
            read += len(data)
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            if not np.isfinite(mono).all():
                bad = read - len(data) + int(np.argmax(~np.isfinite(mono)))
                raise AudioError(f"{path}: non-finite sample (NaN or Inf) at {bad / f.samplerate:.3f} s")
            yield mono
    except (sf.LibsndfileError, RuntimeError) as err:
        decoded = _decoded_before_failure(path, read, block)
        raise AudioError(f"{path}: corrupt or truncated audio after {decoded / f.samplerate:.2f} s ({_reason(err)})") from None
    if read == 0:
        raise AudioError(f"{path}: contains no audio samples (zero length)")
    # Formats with a frame count in the header (WAV, FLAC) reveal truncation; libsndfile reads what is there.
    if 0 < declared < (1 << 62) and read < declared and f.format not in ("MPEG", "OGG"):
        raise AudioError(f"{path}: truncated after {read / f.samplerate:.2f} s: header declares {declared} frames, "
                         f"only {read} could be read")


def _decoded_before_failure(path: str, read: int, block: int) -> int:
    """Frames that decode before the damage: libsndfile drops a whole failed block (20 s), so the block is decoded
    again from a fresh handle in small steps (neither the failed handle's position nor its seeking is reliable)."""
    decoded = read

    def redecode() -> None:
        nonlocal decoded
        with sf.SoundFile(path) as g:
            if read:
                g.seek(read)
            while decoded < read + block:
                n = len(g.read(256, dtype="float32"))
                if n == 0:
                    break
                decoded += n

    try:
        _quietly(redecode)
    except Exception:  # the damage itself: what decoded before it is counted
        pass
    return decoded


def load_audio(source, sample_rate: int | None = None, target_rate: int = SAMPLE_RATE) -> Audio:
    """Load ``source`` (a path, or a 1-D/2-D array with its ``sample_rate``) as 16 kHz mono float32."""
    if isinstance(source, (str, os.PathLike)):
        with _open(source) as f:
            sr, channels, fmt = f.samplerate, f.channels, f.format
            out = np.empty(math.ceil(max(f.frames, 1) * target_rate / sr) + target_rate, dtype=np.float32)
            n = 0
            for chunk in _resampled(f, str(source), target_rate):
                out, n = _append(out, n, chunk)
        return Audio(out[:n], target_rate, str(source), sr, channels, fmt)
    return _from_array(source, sample_rate, target_rate)


def stream_audio(path: str | os.PathLike, chunk_samples: int, target_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """16 kHz mono float32 of the file at ``path`` in pieces of exactly ``chunk_samples`` (the last may be
    shorter), decoded, resampled and checked as :func:`load_audio` does, sample for sample the same, but never
    held whole: memory is one piece plus one decoding block, whatever the duration."""
    if chunk_samples < 1:
        raise AudioError(f"chunk_samples must be >= 1, got {chunk_samples}")
    with _open(path) as f:
        pending: list[np.ndarray] = []
        held = 0

        def take(final: bool):
            nonlocal pending, held
            while held >= chunk_samples or (final and held):
                joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
                piece, rest = joined[:chunk_samples], joined[chunk_samples:]
                pending, held = ([rest] if len(rest) else []), len(rest)
                yield piece

        for chunk in _resampled(f, str(path), target_rate):
            if len(chunk):
                pending.append(chunk)
                held += len(chunk)
            yield from take(final=False)
        yield from take(final=True)


def _resampled(f: sf.SoundFile, path: str, target_rate: int) -> Iterator[np.ndarray]:
    """Checked mono blocks of an open file at ``target_rate``, the resampler's tail included: the one decoding
    path of ``load_audio`` and ``stream_audio``."""
    resampler = soxr.ResampleStream(f.samplerate, target_rate, 1, dtype="float32", quality="HQ") if f.samplerate != target_rate else None
    for mono in _stream_mono(f, path):
        yield resampler.resample_chunk(mono) if resampler else mono
    if resampler:
        yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def _append(out: np.ndarray, n: int, chunk: np.ndarray) -> tuple[np.ndarray, int]:
    if n + len(chunk) > len(out):
        grown = np.empty(max(2 * len(out), n + len(chunk)), dtype=np.float32)
        grown[:n] = out[:n]
        out = grown
    out[n : n + len(chunk)] = chunk
    return out, n + len(chunk)


def _from_array(array, sample_rate: int | None, target_rate: int) -> Audio:
    if sample_rate is None:
        raise AudioError("an array input needs its sample_rate")
    try:
        data = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise AudioError(f"array input is not numeric audio ({err})") from None
    if data.ndim == 2:
        # Accept [samples, channels] (soundfile) and [channels, samples] (torchaudio) layouts.
        data = data.mean(axis=1) if data.shape[0] >= data.shape[1] else data.mean(axis=0)
    if data.ndim != 1:
        raise AudioError(f"array input must be 1-D or 2-D, got shape {data.shape}")
    if data.size == 0:
        raise AudioError("array input contains no audio samples (zero length)")
    if not np.isfinite(data).all():
        raise AudioError("array input has non-finite samples (NaN or Inf)")
    if sample_rate != target_rate:
        data = soxr.resample(data, sample_rate, target_rate, quality="HQ").astype(np.float32)
    return Audio(data, target_rate, "<array>", sample_rate, 1, "ARRAY")


def header_seconds(path: str | os.PathLike) -> float:
    """A file's length from its header alone (for checking manifest offsets), with the decoder kept quiet."""
    _check_file(path)
    try:
        info, _ = _quietly(sf.info, str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: cannot decode as audio ({_reason(err)})") from None
    return info.frames / info.samplerate if info.samplerate else 0.0


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Decode and validate the whole file without keeping it (constant memory in the duration)."""
    with _open(path) as f:
        frames = sum(len(b) for b in _stream_mono(f, str(path)))
        return AudioInfo(str(path), frames / f.samplerate, f.samplerate, f.channels, f.format, f.subtype, frames)

"""Real speech anywhere: espeak-ng renders text to a 16 kHz waveform, deterministically.

espeak-ng is a system package (Debian ``espeak-ng``); the project's setup script installs it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from speechpress.errors import SpeechpressError

SAMPLE_RATE = 16000


class TTSError(SpeechpressError):
    """espeak-ng is missing or refused the text/voice."""


@dataclass(frozen=True)
class Voice:
    """One espeak-ng speaker setting: language voice + variant, words per minute, pitch (0-99)."""

    name: str = "en-us"
    variant: str | None = None
    rate: int = 165
    pitch: int = 50

    @property
    def espeak_voice(self) -> str:
        return f"{self.name}+{self.variant}" if self.variant else self.name


def espeak_binary() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise TTSError("espeak-ng is not installed (Debian: apt-get install espeak-ng; see README 'Install')")
    return exe


def speak(text: str, voice: Voice = Voice(), sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Render ``text`` with ``voice``; returns mono float32 samples at ``sample_rate``."""
    if not text.strip():
        raise TTSError("cannot speak empty text")
    cmd = [espeak_binary(), "-v", voice.espeak_voice, "-s", str(voice.rate), "-p", str(voice.pitch), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise TTSError(f"espeak-ng failed for voice {voice.espeak_voice!r}: {proc.stderr.decode(errors='replace').strip()}")
    audio, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if sr != sample_rate:
        audio = soxr.resample(audio, sr, sample_rate, quality="HQ").astype(np.float32)
    return audio

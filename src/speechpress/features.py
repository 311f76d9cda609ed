"""Whisper-compatible log-mel features in 30 s windows, computed window by window.

Same algorithm as transformers' ``WhisperFeatureExtractor`` (Hann window 400, hop 160, power spectrum, slaney
mel filters, log10, clamp to max - 8, (x + 4) / 4), with one difference that matters for long audio: each
window is featurized on its own, so only one batch of windows' FFT and mel intermediates exists at a time,
and the last window carries its valid length so padding never becomes audio tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
import torch

N_FFT = 400
HOP_LENGTH = 160
SAMPLE_RATE = 16000


@lru_cache(maxsize=4)
def mel_filters(n_mels: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """[n_freq, n_mels] slaney mel filters, the ones Whisper uses (built by transformers' audio_utils)."""
    from transformers.audio_utils import mel_filter_bank

    fb = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(np.asarray(fb, dtype=np.float32))


def log_mel(windows: torch.Tensor, n_mels: int) -> torch.Tensor:
    """[B, samples] waveforms (each a padded window) -> [B, n_mels, samples // hop] Whisper log-mel."""
    stft = torch.stft(windows, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = mel_filters(n_mels).T @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0


@dataclass
class FeatureWindow:
    """Features of one window and which of its mel frames are real audio."""

    index: int
    start: float  # seconds into the recording
    features: torch.Tensor  # [n_mels, frames_per_window]
    valid_frames: int  # mel frames that hold audio (ceil(samples / hop)); the rest is padding
    valid_samples: int


def num_windows(num_samples: int, window_seconds: float = 30.0, sample_rate: int = SAMPLE_RATE) -> int:
    return max(1, math.ceil(num_samples / (window_seconds * sample_rate)))


def iter_feature_windows(
    samples: np.ndarray | torch.Tensor,
    n_mels: int = 80,
    window_seconds: float = 30.0,
    sample_rate: int = SAMPLE_RATE,
    batch_windows: int = 8,
) -> Iterator[list[FeatureWindow]]:
    """Yield batches of windows' features; memory stays at one batch whatever the duration."""
    wave = torch.as_tensor(samples, dtype=torch.float32)
    per_window = int(round(window_seconds * sample_rate))
    total = num_windows(len(wave), window_seconds, sample_rate)
    for first in range(0, total, batch_windows):
        idx = range(first, min(total, first + batch_windows))
        batch = torch.zeros(len(idx), per_window)
        valid = []
        for row, w in enumerate(idx):
            piece = wave[w * per_window : (w + 1) * per_window]
            batch[row, : len(piece)] = piece
            valid.append(len(piece))
        feats = log_mel(batch, n_mels)
        yield [
            FeatureWindow(w, w * window_seconds, feats[row], math.ceil(valid[row] / HOP_LENGTH), valid[row])
            for row, w in enumerate(idx)
        ]


def iter_stream_feature_windows(
    pieces, n_mels: int = 80, window_seconds: float = 30.0, sample_rate: int = SAMPLE_RATE, batch_windows: int = 8
) -> Iterator[list[FeatureWindow]]:
    """Like :func:`iter_feature_windows`, from an iterator of window-long sample pieces (``audio.stream_audio``),
    so the recording is never whole in memory; the same features, window for window."""
    per_window = int(round(window_seconds * sample_rate))
    index = 0
    batch: list = []

    def flush():
        wave = torch.zeros(len(batch), per_window)
        for row, piece in enumerate(batch):
            wave[row, : len(piece)] = torch.as_tensor(piece, dtype=torch.float32)
        feats = log_mel(wave, n_mels)
        first = index - len(batch)
        return [FeatureWindow(first + row, (first + row) * window_seconds, feats[row],
                              math.ceil(len(piece) / HOP_LENGTH), len(piece)) for row, piece in enumerate(batch)]

    for piece in pieces:
        if len(piece) > per_window:
            raise ValueError(f"a piece of {len(piece)} samples is longer than a window ({per_window})")
        batch.append(piece)
        index += 1
        if len(batch) == batch_windows:
            yield flush()
            batch = []
    if batch:
        yield flush()

"""Truncation to the head of the recording: what a speech LLM does with long audio by default.

SpeechPrune's "Original" baseline (Qwen2-Audio reads the first 30 s, 750 tokens, and never hears the rest): the
floor that shows what long-form processing buys. Without a target the press keeps ``seconds`` of audio (30 by
default), i.e. ``ceil(n * seconds / duration)`` tokens; with a ratio or tokens-per-second target it keeps that
many tokens from the start, a head crop at a matched rate.
"""

from __future__ import annotations

import math

from speechpress.errors import PressError
from speechpress.presses.base import Press, PressContext
from speechpress.presses.registry import register_press

DEFAULT_SECONDS = 30.0  # Qwen2-Audio's (and Whisper's) one window


@register_press
class TruncatePress(Press):
    name = "truncate"
    description = "keep the first 30 s, drop the rest: the default of most speech LLMs (SpeechPrune's 'Original')"
    paper = "SpeechPrune's 'Original' (first 30 s) as is"
    default_target = True

    def __init__(self, ratio: float | None = None, tokens_per_second: float | None = None, *,
                 seconds: float = DEFAULT_SECONDS):
        super().__init__(ratio, tokens_per_second)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < math.inf:
            raise PressError(f"truncate: seconds must be a positive number, got {seconds!r}")
        self.seconds = float(seconds)

    def output_length(self, n_in: int, duration_s: float | None = None) -> int:
        if self.ratio is not None or self.tokens_per_second is not None or n_in <= 0:
            return super().output_length(n_in, duration_s)
        if duration_s is None or not duration_s > 0:
            raise PressError("truncate keeps a number of seconds: it needs the audio duration")
        return max(1, min(n_in, math.ceil(n_in * self.seconds / duration_s - 1e-9)))

    def compress_row(self, embeddings, spans, context: PressContext, index: int):
        n_out = self.target(spans)
        return embeddings[:n_out], spans[:n_out]

    def extra_repr(self) -> str:
        if self.ratio is None and self.tokens_per_second is None:
            return f"seconds={self.seconds:g}"
        return super().extra_repr()


"""The one ratio language of speechpress, and the conversions to other conventions.

A compression factor ``k`` is tokens in / tokens out (Speech-XL's alpha, "8x"). A press may instead be given
a ``tokens_per_second`` target. Other projects use other words for the same knob; convert only at the edges:

==========================  =============================  ===============================
convention                   example                        as a compression factor k
==========================  =============================  ===============================
speechpress / Speech-XL      k = 8                          k
kvpress ``compression_ratio``  fraction removed r = 0.875     1 / (1 - r)
SpeechPrune pruning rate     PR = 0.8 of B1 = 750 tokens    n / ((1 - PR) * min(n, B1))  (n: tokens in)
tokens per second            1.67 tokens/s at 50 frames/s   50 / 1.67
==========================  =============================  ===============================
"""

from __future__ import annotations

import math

from speechpress.errors import PressError


def check_ratio(ratio: float | None, tokens_per_second: float | None) -> None:
    """Reject impossible targets early, with the reason, before any audio is touched."""
    if ratio is not None and tokens_per_second is not None:
        raise PressError("give either a compression ratio or a tokens-per-second target, not both")
    if ratio is not None:
        if not isinstance(ratio, (int, float)) or math.isnan(ratio) or math.isinf(ratio):
            raise PressError(f"compression ratio must be a finite number, got {ratio!r}")
        if ratio < 1:
            raise PressError(f"compression ratio must be >= 1 (tokens in / tokens out), got {ratio}")
    if tokens_per_second is not None:
        if not isinstance(tokens_per_second, (int, float)) or not (tokens_per_second > 0) or math.isinf(
            tokens_per_second
        ):
            raise PressError(f"tokens per second must be a positive finite number, got {tokens_per_second!r}")


def target_length(
    n_in: int, ratio: float | None = None, tokens_per_second: float | None = None, duration_s: float | None = None
) -> int:
    """Tokens a press must output for ``n_in`` input tokens: ceil(n_in / k), never below 1 or above n_in."""
    check_ratio(ratio, tokens_per_second)
    if n_in <= 0:
        return 0
    if tokens_per_second is not None:
        if duration_s is None:
            raise PressError("a tokens-per-second target needs the audio duration")
        n_out = math.ceil(duration_s * tokens_per_second - 1e-9)
    else:
        k = 1.0 if ratio is None else float(ratio)
        n_out = math.ceil(n_in / k - 1e-9)
    return max(1, min(n_in, n_out))


def ratio_from_fraction_removed(fraction: float) -> float:
    """kvpress' ``compression_ratio`` (fraction of tokens removed) as a compression factor."""
    if not 0 <= fraction < 1:
        raise PressError(f"fraction removed must be in [0, 1), got {fraction}")
    return 1.0 / (1.0 - fraction)


def fraction_removed_from_ratio(ratio: float) -> float:
    """A compression factor as kvpress' ``compression_ratio`` (fraction removed)."""
    check_ratio(ratio, None)
    return 1.0 - 1.0 / ratio


def ratio_from_pruning_rate(pruning_rate: float, n_in: int, phase1_tokens: int = 750) -> float:
    """SpeechPrune's pruning rate (relative to its phase-1 budget B1, 750 tokens in the paper) as the compression
    factor it gives on ``n_in`` tokens: PR 0.2 on 90 s (2,250 tokens) keeps 600, k = 3.75."""
    if not 0 <= pruning_rate < 1:
        raise PressError(f"pruning rate must be in [0, 1), got {pruning_rate}")
    if n_in < 1 or phase1_tokens < 1:
        raise PressError(f"need at least one token in and a phase-1 budget >= 1, got {n_in} and {phase1_tokens}")
    return n_in / max(1, round((1 - pruning_rate) * min(n_in, phase1_tokens)))

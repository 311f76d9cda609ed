"""Where every token of SST's interleaved sequence sits: the per-interval alpha schedule and the layout of speech
tokens and Speech Summarization Tokens, shared by streaming prefill and the training mask (so both agree).

Interval ``k`` of ``L`` speech tokens at ratio ``a`` holds ``ceil(L / a)`` SSTs: speech token ``i`` goes to
``i + i // a`` and the SST closing group ``g`` to ``min((g + 1) a, L) + g``, so no speech token is left without a
summary and a ragged tail gets one SST of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from speechpress.errors import PressError

AlphaSpec = int | Sequence[int] | Callable[[int], int] | None


@dataclass
class Layout:
    """Where every token of the interleaved audio part sits (one row; see ``SummaryTokenPress.layout``).

    ``source[i]`` is the audio-token index of interleaved position ``i``, or -1 for an SST; ``slot[i]`` the SST
    embedding used there (-1 on speech); ``interval[i]`` its interval; ``bounds[k]`` = (start, end) of interval
    ``k`` in the interleaved sequence; ``alphas[k]`` its ratio.
    """

    source: torch.Tensor
    slot: torch.Tensor
    interval: torch.Tensor
    bounds: list[tuple[int, int]]
    alphas: list[int]

    @property
    def is_sst(self) -> torch.Tensor:
        return self.source < 0

    @property
    def num_sst(self) -> int:
        return int(self.is_sst.sum())

    def __len__(self) -> int:
        return int(self.source.numel())


def alpha_schedule(alpha: AlphaSpec, default: Callable[[], int]) -> Callable[[int], int]:
    """``interval index -> alpha`` from an int, a list (one per interval) or a callable, each value checked;
    ``default()`` (the press's own ratio) when alpha is None."""
    if alpha is None:
        fixed = default()
        return lambda k: fixed
    if callable(alpha):
        fn = alpha
    elif isinstance(alpha, (int, float)):
        fn = lambda k: alpha  # noqa: E731
    elif isinstance(alpha, Sequence):
        seq = list(alpha)

        def fn(k: int) -> int:
            if k >= len(seq):
                raise PressError(f"alpha list has {len(seq)} entries but interval {k} needs one")
            return seq[k]
    else:
        raise PressError(f"alpha must be an int, a list of ints or a callable, got {type(alpha).__name__}")

    def checked(k: int) -> int:
        a = fn(k)
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not float(a).is_integer() or a < 1:
            raise PressError(f"alpha for interval {k} must be a whole number >= 1, got {a!r}")
        return int(a)

    return checked


def interleave(intervals: list[tuple[int, int, int]], num_embeddings: int) -> Layout:
    """The layout of ``intervals`` ([(start, end, alpha)] of the audio tokens); the j-th SST of an interval uses
    embedding ``j % num_embeddings``."""
    sources, slots, ivals, bounds, alphas = [], [], [], [], []
    offset = 0
    for k, (s, e, a) in enumerate(intervals):
        n = e - s
        n_sst = math.ceil(n / a)
        m = n + n_sst
        local = torch.arange(n)
        src = torch.full((m,), -1, dtype=torch.long)
        src[local + local // a] = local + s
        g = torch.arange(n_sst)
        slot = torch.full((m,), -1, dtype=torch.long)
        slot[torch.clamp((g + 1) * a, max=n) + g] = g % num_embeddings
        sources.append(src)
        slots.append(slot)
        ivals.append(torch.full((m,), k, dtype=torch.long))
        bounds.append((offset, offset + m))
        alphas.append(a)
        offset += m
    empty = torch.zeros(0, dtype=torch.long)
    return Layout(
        source=torch.cat(sources) if sources else empty,
        slot=torch.cat(slots) if slots else empty,
        interval=torch.cat(ivals) if ivals else empty,
        bounds=bounds,
        alphas=alphas,
    )

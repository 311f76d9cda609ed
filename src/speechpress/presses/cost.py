"""Parameters and FLOPs of a press for a given input length, measured by running it.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and attention;
element-wise work such as softmax, LayerNorm and GELU is not counted), on synthetic frames at
``frames_per_second`` (25/s, the rate presses see by default). Training-free presses work too; query-aware
ones need a ``context`` with the question (and the LLM for SpeechPrune).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from speechpress.errors import PressError
from speechpress.presses.base import AudioTokens, Press, PressContext


@dataclass(frozen=True)
class PressCost:
    parameters: int  # all parameters of the press
    trainable_parameters: int  # those with requires_grad
    flops: int  # forward FLOPs for one row of ``tokens_in`` frames
    tokens_in: int
    tokens_out: int


def synthetic_tokens(num_tokens: int, dim: int, frames_per_second: float = 25.0, seed: int = 0, device=None, dtype=None) -> AudioTokens:
    """One row of ``num_tokens`` random frames with contiguous spans at ``frames_per_second``."""
    if num_tokens < 1:
        raise PressError(f"need at least one token, got {num_tokens}")
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(1, num_tokens, dim, generator=gen).to(device=device, dtype=dtype or torch.float32)
    starts = torch.arange(num_tokens, dtype=torch.float64) / frames_per_second
    spans = torch.stack([starts, starts + 1.0 / frames_per_second], dim=-1)[None]
    return AudioTokens(emb, torch.tensor([num_tokens]), spans)


def press_cost(
    press: Press,
    num_tokens: int,
    dim: int | None = None,
    frames_per_second: float = 25.0,
    context: PressContext | None = None,
) -> PressCost:
    """Parameter count and forward FLOPs of ``press`` on ``num_tokens`` input frames (one row)."""
    dim = dim if dim is not None else getattr(press, "dim", None)
    if dim is None:
        raise PressError(f"press {press.name!r} has no width of its own: pass dim")
    first = next(press.parameters(), None)
    device = first.device if first is not None else None
    dtype = first.dtype if first is not None else None
    tokens = synthetic_tokens(num_tokens, dim, frames_per_second, device=device, dtype=dtype)
    # Not under no_grad: FlopCounterMode's module tracker asserts on views of parameters made without autograd.
    with FlopCounterMode(display=False) as counter:
        out = press(tokens, context)
    params = list(press.parameters())
    return PressCost(
        parameters=sum(p.numel() for p in params),
        trainable_parameters=sum(p.numel() for p in params if p.requires_grad),
        flops=int(counter.get_total_flops()),
        tokens_in=num_tokens,
        tokens_out=int(out.lengths[0]),
    )

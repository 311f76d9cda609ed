"""FastSLM's HFQ-Former (renamed HTA in v3): hierarchical learned compression of each 30 s window.

Per window (as in ``Lee-junseok1025/FastSLM`` ``models/model.py``)::

    X1 = frames of the window                        # n_w x D
    X2 = Downsampler(X1); X3 = Downsampler(X2)       # conv k3 + GELU, conv k3 stride 2 + GELU, LayerNorm
    Q  = concat[Compressor_s(X1), Compressor_s(X2), Compressor_s(X3)]    # 3 x stage_queries
    Qc = Compressor_N(Q)                             # N output queries
    Xh = concat[X1, X2, X3]
    depth x: Qc = Qc + SelfAttn(LN(Qc)); Qc = Qc + CrossAttn(LN(Qc), Xh)   # no FFN

A Compressor is a resampler with learned queries and no q/k/v projections: ``q = LN(queries) + PE``,
``k = LN(X) + PE``, ``v = LN(X)`` (sinusoidal PE over positions), multi-head SDPA, then ``out_proj``. The four
compressors, the two downsamplers and the blocks all have their own weights. The press is encoder-space and
keeps the width D; the model's projector maps to the LLM afterwards (FastSLM's ``llm_proj``).

Choices that differ from FastSLM, and why:

* Windows come from the spans, counted from the row's start: token i belongs to window
  ``floor((span_start - row_start) / window_seconds)``, so any input rate works (frames reach presses at 25/s by
  default: 750 per full window, not Whisper's 1500) and a row cut out of a longer recording gets full windows.
* By default the last window is **not** zero-padded to 30 s. FastSLM pads it and always emits N tokens (a 1 s
  clip costs as much as 30 s); ``pad_last_window=True`` does exactly that (FastSLM's own behaviour: every window,
  the last included, is zero-padded to a full window of ``window_seconds * frames_per_second`` frames and yields
  ``num_queries`` tokens). Otherwise each window is pressed to its share of the target: windows are walked in order, the
  running target ``ceil(cumulative ideal)`` (ideal = window seconds x tokens/s, or window frames / k) gives each
  window's count, so full windows get N (or N and N+1 alternating when N is fractional), a shorter last window
  proportionally fewer, and the row total is exactly ``output_length``. Keys get PE over the frames present.
* The N output queries are one learned bank, sized for a full window at construction (``num_queries``; by
  default from the target and ``frames_per_second``). A window that needs m != N outputs (the short last
  window, or a press whose ratio was changed after training) reads the bank linearly resampled to m points
  (query i at bank position ``(i + 0.5) * N / m - 0.5``) with the sinusoidal PE at those same fractional
  positions; for m == N this is exactly the bank.
* Every output token's span is its whole window: each one attends to all of it.

Default target: ``tokens_per_second = 5/3`` (the paper's 1.67 tokens/s, 50 tokens per 30 s window).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from speechpress.errors import PressError
from speechpress.presses.base import Press, PressContext, resolve_heads
from speechpress.presses.registry import register_press
from speechpress.ratio import target_length

DEFAULT_TOKENS_PER_SECOND = 50 / 30
WINDOW_SECONDS = 30.0


def sinusoids(positions: torch.Tensor, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper/FastSLM sinusoidal embeddings, at (possibly fractional) ``positions``: [len, channels]."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32, device=positions.device))
    scaled = positions.to(torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


def resample_queries(bank: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` queries read off ``bank`` [N, D] by linear interpolation, and their fractional positions."""
    n = bank.shape[0]
    if m == n:
        return bank, torch.arange(n, dtype=torch.float32, device=bank.device)
    pos = ((torch.arange(m, dtype=torch.float32, device=bank.device) + 0.5) * n / m - 0.5).clamp(0, n - 1)
    lo = pos.floor().long()
    hi = torch.clamp(lo + 1, max=n - 1)
    frac = (pos - lo.to(pos.dtype))[:, None].to(bank.dtype)
    return bank[lo] * (1 - frac) + bank[hi] * frac, pos


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, D] -> [B, H, L, D/H]."""
    b, length, dim = x.shape
    return x.view(b, length, heads, dim // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)


class Compressor(nn.Module):
    """Learned-query resampler without q/k/v projections (FastSLM ``Compressor``)."""

    def __init__(self, dim: int, num_heads: int, num_queries: int):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.q_ln = nn.LayerNorm(dim)
        self.kv_ln = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, num_out: int | None = None) -> torch.Tensor:
        """x [B, L, D] -> [B, num_out (default: the learned count), D]."""
        b, length, dim = x.shape
        query, qpos = resample_queries(self.query, self.query.shape[0] if num_out is None else num_out)
        q = (self.q_ln(query) + sinusoids(qpos, dim).to(x.dtype))[None].expand(b, -1, -1)
        kv = self.kv_ln(x)
        k = kv + sinusoids(torch.arange(length, device=x.device), dim).to(x.dtype)[None]
        out = F.scaled_dot_product_attention(_heads(q, self.num_heads), _heads(k, self.num_heads), _heads(kv, self.num_heads))
        return self.out_proj(_merge(out))


class Downsampler(nn.Module):
    """Conv1d(k3) + GELU, Conv1d(k3, stride 2) + GELU, LayerNorm: halves the length (ceil)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1)
        self.ln_post = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(x.transpose(1, 2)))))
        return self.ln_post(x.transpose(1, 2))


class MultiHeadAttention(nn.Module):
    """FastSLM's MHSA: q/v/out with bias, k without."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, xa: torch.Tensor | None = None) -> torch.Tensor:
        src = x if xa is None else xa
        h = self.num_heads
        out = F.scaled_dot_product_attention(_heads(self.q(x), h), _heads(self.k(src), h), _heads(self.v(src), h))
        return self.out_proj(_merge(out))


class AttentionBlock(nn.Module):
    """Pre-LN self-attention over the output queries, then cross-attention into the multi-scale frames."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads)
        self.cross_attn = MultiHeadAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.cross_attn(self.norm2(x), xa)


@register_press
class HFQFormerPress(Press):
    name = "hfq"
    description = "HFQ-Former: multi-scale learned queries per 30 s window (FastSLM)"
    paper = "FastSLM: pad_last_window=true on a model with --encoder-pool 1 (Whisper's 50 Hz frames; default: a short last window gets fewer tokens)"
    space = "encoder"
    trainable = True
    default_target = True

    def __init__(
        self,
        ratio: float | None = None,
        tokens_per_second: float | None = None,
        *,
        dim: int,
        num_heads: int | None = None,
        stage_queries: int = 80,
        depth: int = 2,
        num_queries: int | None = None,
        window_seconds: float = WINDOW_SECONDS,
        frames_per_second: float = 25.0,
        pad_last_window: bool = False,
    ):
        if ratio is None and tokens_per_second is None:
            tokens_per_second = DEFAULT_TOKENS_PER_SECOND
        super().__init__(ratio, tokens_per_second)
        if dim < 4 or dim % 2:
            raise PressError(f"hfq needs an even width >= 4 (sinusoidal positions), got {dim}")
        if stage_queries < 1 or depth < 0 or window_seconds <= 0:
            raise PressError(f"hfq needs stage_queries >= 1, depth >= 0, window_seconds > 0; got {stage_queries}, {depth}, {window_seconds}")
        self.dim, self.stage_queries, self.depth, self.window_seconds = dim, stage_queries, depth, window_seconds
        self.num_heads = resolve_heads(dim, num_heads)
        self.pad_last_window = False  # set below: num_queries is a full window's share of the target
        if num_queries is None:
            full = max(1, round(window_seconds * frames_per_second))
            num_queries = self.output_length(full, window_seconds)
        self.num_queries = int(num_queries)
        self.pad_last_window = bool(pad_last_window)
        self.window_frames = max(1, round(window_seconds * frames_per_second))
        self.downsamplers = nn.ModuleList([Downsampler(dim) for _ in range(2)])
        self.stage_compressors = nn.ModuleList([Compressor(dim, self.num_heads, stage_queries) for _ in range(3)])
        self.compressor = Compressor(dim, self.num_heads, self.num_queries)
        self.blocks = nn.ModuleList([AttentionBlock(dim, self.num_heads) for _ in range(depth)])

    def output_length(self, n_in: int, duration_s: float | None = None) -> int:
        if self.pad_last_window and n_in > 0:  # FastSLM: num_queries per window, whatever the window holds
            if duration_s is None:
                raise PressError("hfq with pad_last_window counts windows: it needs the audio duration")
            return max(1, math.ceil(duration_s / self.window_seconds - 1e-9)) * self.num_queries
        if self.ratio is None and self.tokens_per_second is None:  # e.g. a copy whose target was cleared
            return target_length(n_in, None, DEFAULT_TOKENS_PER_SECOND, duration_s)
        return super().output_length(n_in, duration_s)

    def window_counts(self, sizes: torch.Tensor, seconds: torch.Tensor, n_out: int) -> torch.Tensor:
        """Outputs per window: each window's running share of the target, summing to exactly ``n_out``."""
        sizes64 = sizes.to(torch.float64)
        if self.ratio is None and self.tokens_per_second is None:
            ideal = seconds * DEFAULT_TOKENS_PER_SECOND
        elif self.tokens_per_second is not None:
            ideal = seconds * self.tokens_per_second
        else:
            ideal = sizes64 / self.ratio
        ideal = torch.minimum(ideal, sizes64)
        bounds = torch.clamp(torch.ceil(torch.cumsum(ideal, 0) - 1e-9).long(), max=n_out)
        bounds[-1] = n_out
        counts = torch.diff(bounds, prepend=bounds.new_zeros(1))
        if (counts < 0).any() or (counts > sizes).any():
            # Only for odd inputs (gaps between windows, targets above the frame count): split by frames.
            cum = torch.cumsum(sizes, 0)
            bounds = torch.div(cum * n_out, int(cum[-1]), rounding_mode="floor")
            counts = torch.diff(bounds, prepend=bounds.new_zeros(1))
        return counts

    def press_windows(self, x1: torch.Tensor, num_out: int) -> torch.Tensor:
        """Windows of equal length x1 [G, L, D] -> [G, num_out, D]."""
        x2 = self.downsamplers[0](x1)
        x3 = self.downsamplers[1](x2)
        scales = (x1, x2, x3)
        stage = torch.cat([c(x) for c, x in zip(self.stage_compressors, scales)], dim=1)
        q = self.compressor(stage, num_out)
        memory = torch.cat(scales, dim=1)
        for block in self.blocks:
            q = block(q, memory)
        return q

    def compress_row(self, embeddings, spans, context: PressContext, index: int):
        window_of = torch.floor((spans[:, 0] - spans[0, 0] + 1e-6) / self.window_seconds).long()
        _, sizes = torch.unique_consecutive(window_of, return_counts=True)
        ends = torch.cumsum(sizes, 0)
        starts = ends - sizes
        if self.pad_last_window:
            return self.press_padded(embeddings, spans, starts, ends)
        n_out = self.target(spans)
        seconds = spans[ends - 1, 1] - spans[starts, 0]
        counts = self.window_counts(sizes, seconds, n_out)
        outputs: list[torch.Tensor | None] = [None] * len(sizes)
        # Windows of the same length and output count run as one batch (all full windows, typically).
        groups: dict[tuple[int, int], list[int]] = {}
        for w, (size, count) in enumerate(zip(sizes.tolist(), counts.tolist())):
            if count > 0:
                groups.setdefault((size, count), []).append(w)
        for (size, count), members in groups.items():
            x = torch.stack([embeddings[int(starts[w]) : int(starts[w]) + size] for w in members])
            for w, y in zip(members, self.press_windows(x, count)):
                outputs[w] = y
        out = torch.cat([o for o in outputs if o is not None], dim=0)
        window_spans = torch.stack([spans[starts, 0], spans[ends - 1, 1]], dim=-1)
        return out, torch.repeat_interleave(window_spans, counts, dim=0)

    def press_padded(self, embeddings, spans, starts, ends):
        """FastSLM's windows: each zero-padded to ``window_frames`` frames, ``num_queries`` tokens from each."""
        x = embeddings.new_zeros(len(starts), max(self.window_frames, int((ends - starts).max())), embeddings.shape[-1])
        for w, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
            x[w, : b - a] = embeddings[a:b]
        out = self.press_windows(x, self.num_queries).reshape(-1, embeddings.shape[-1])
        window_spans = torch.stack([spans[starts, 0], spans[ends - 1, 1]], dim=-1)
        return out, torch.repeat_interleave(window_spans, self.num_queries, dim=0)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, dim={self.dim}, heads={self.num_heads}, stage_queries={self.stage_queries}, "
            f"num_queries={self.num_queries}, depth={self.depth}, pad_last_window={self.pad_last_window}"
        )

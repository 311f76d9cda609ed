"""SALMONN's window-level Q-Former: ``q`` learned queries summarise each window of ``w = k * q`` frames.

SALMONN cuts the 50 Hz encoder output into 17-frame (0.33 s) windows and lets one learned query per window
cross-attend into it through a 2-layer BERT Q-Former. Here each layer is an ``nn.TransformerDecoderLayer``
(self-attention over the window's queries, cross-attention into the window's frames, FFN; post-LN like BERT),
the frames pass a LayerNorm first (SALMONN's ``ln_speech``), the learned queries pass one too (BERT's embedding
LayerNorm, which SALMONN's Q-Former applies to its query tokens; ``query_norm=False`` leaves them raw), and, as in
SALMONN, the frames carry no position embedding: a window is a small unordered set. Dropout defaults to 0 so
training and inference agree.

``overlap`` frames on each side let windows overlap (stride < window, which SALMONN's windowing allows): the
stride, and so the output count, stays the ratio's; each window reads ``overlap`` more frames either side, and
its tokens' spans cover what it read.

Window layout (the output count is exactly ``output_length`` for any target): the row splits into
``ceil(n_out / q)`` windows. With a ratio k whose ``w = k*q`` is a whole number they are SALMONN's fixed
``w``-frame windows, the last one shorter; otherwise (a tokens-per-second target, or fractional w) window i
spans frames ``[floor(i*q*n/n_out), floor((i+1)*q*n/n_out))``. Every window emits ``q`` tokens except the
last, which emits the remainder ``n_out - q*(windows-1)`` (for fixed windows that is ``ceil(r/k)`` of its r
frames) from the first queries; the unused queries are masked out of the self-attention, so they cannot
influence the rest. Each token's span is its window's span.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from speechpress.errors import PressError
from speechpress.presses.base import Press, PressContext, group_spans, resolve_heads
from speechpress.presses.registry import register_press


@register_press
class WindowQFormerPress(Press):
    name = "qformer"
    description = "window-level Q-Former: q learned queries per window of k*q frames (SALMONN)"
    paper = "SALMONN: query_norm=true, no overlap (the defaults); overlap=N lets windows overlap"
    space = "encoder"
    trainable = True

    def __init__(
        self,
        ratio: float | None = None,
        tokens_per_second: float | None = None,
        *,
        dim: int,
        num_heads: int | None = None,
        num_queries: int = 1,
        depth: int = 2,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        query_norm: bool = True,
        overlap: int = 0,
    ):
        super().__init__(ratio, tokens_per_second)
        if num_queries < 1 or depth < 1 or ffn_mult < 1:
            raise PressError(f"qformer needs num_queries, depth and ffn_mult >= 1, got {num_queries}, {depth}, {ffn_mult}")
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
            raise PressError(f"qformer overlap must be a whole number of frames >= 0, got {overlap!r}")
        self.dim, self.num_queries, self.depth = dim, num_queries, depth
        self.query_norm, self.overlap = bool(query_norm), overlap
        self.num_heads = resolve_heads(dim, num_heads)
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.ln_queries = nn.LayerNorm(dim) if self.query_norm else nn.Identity()
        self.ln_frames = nn.LayerNorm(dim)
        layer = nn.TransformerDecoderLayer(
            dim, self.num_heads, dim_feedforward=ffn_mult * dim, dropout=dropout, batch_first=True, norm_first=False
        )
        self.layers = nn.TransformerDecoder(layer, num_layers=depth)

    def windows(self, n: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Window frame bounds (starts, ends) and queries per window for ``n`` frames and ``n_out`` outputs."""
        count = math.ceil(n_out / self.num_queries)
        width = None if self.ratio is None or self.tokens_per_second is not None else self.ratio * self.num_queries
        if width is not None and abs(width - round(width)) < 1e-9 and math.ceil(n / round(width)) == count:
            # SALMONN's layout: fixed windows of w = k*q frames, the last one shorter.
            cuts = torch.clamp(torch.arange(count + 1) * round(width), max=n)
        else:
            cuts = torch.div(torch.arange(count + 1) * self.num_queries * n, n_out, rounding_mode="floor")
        cuts[-1] = n
        per_window = torch.full((count,), self.num_queries, dtype=torch.long)
        per_window[-1] = n_out - self.num_queries * (count - 1)
        return cuts[:-1], cuts[1:], per_window

    def compress_row(self, embeddings, spans, context: PressContext, index: int):
        n, n_out = embeddings.shape[0], self.target(spans)
        starts, ends, per_window = self.windows(n, n_out)
        starts, ends = torch.clamp(starts - self.overlap, min=0), torch.clamp(ends + self.overlap, max=n)
        sizes = ends - starts
        longest, count, dev = int(sizes.max()), len(starts), embeddings.device
        # Pad the row's windows into one [W, longest, D] batch; padded frames are masked out of cross-attention.
        offsets = torch.arange(longest)
        index_map = torch.clamp(starts[:, None] + offsets[None, :], max=n - 1)
        frames = self.ln_frames(embeddings[index_map.to(dev)])
        frame_pad = (offsets[None, :] >= sizes[:, None]).to(dev)
        query_pad = (torch.arange(self.num_queries)[None, :] >= per_window[:, None]).to(dev)
        queries = self.ln_queries(self.queries.to(embeddings.dtype))[None].expand(count, -1, -1)
        out = self.layers(queries, frames, tgt_key_padding_mask=query_pad, memory_key_padding_mask=frame_pad)
        out = out[~query_pad]
        spans_out = torch.repeat_interleave(group_spans(spans, starts, ends), per_window.to(spans.device), dim=0)
        return out, spans_out

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, dim={self.dim}, heads={self.num_heads}, queries={self.num_queries}, "
                f"depth={self.depth}, query_norm={self.query_norm}, overlap={self.overlap}")

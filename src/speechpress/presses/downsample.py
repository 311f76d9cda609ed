"""Uniform downsampling: keep one frame in every k (Bhati et al.'s "uniform sampling" baseline to pooling).

Integer k (given as a ratio) keeps frames 0, k, 2k, ... exactly like ``x[::k]``; a non-integer k or a
tokens-per-second target splits the row into ``n_out`` equal groups (sizes differ by at most one) and keeps the
first frame of each. Each kept frame's span is its whole group's span, so the audio stays fully covered.
"""

from __future__ import annotations

from speechpress.presses.base import Press, PressContext, group_spans
from speechpress.presses.registry import register_press


@register_press
class DownsamplePress(Press):
    name = "downsample"
    description = "uniform downsampling: keep the first frame of every k (Bhati et al.)"
    paper = "the paper's method as is"
    space = "encoder"
    uniform = True

    def compress_row(self, embeddings, spans, context: PressContext, index: int):
        starts, ends = self.uniform_groups(embeddings.shape[0], self.target(spans))
        return embeddings[starts.to(embeddings.device)], group_spans(spans, starts, ends)

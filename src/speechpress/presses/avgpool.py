"""Uniform average pooling of consecutive frames (Bhati et al.; Qwen2-Audio's AvgPool1d(2) is k = 2)."""

from __future__ import annotations

from speechpress.presses.base import Press, PressContext, group_spans, segment_mean
from speechpress.presses.registry import register_press


@register_press
class AvgPoolPress(Press):
    name = "avgpool"
    description = "uniform average pooling of k consecutive frames (Bhati et al.)"
    paper = "the paper's method as is"
    uniform = True

    def compress_row(self, embeddings, spans, context: PressContext, index: int):
        starts, ends = self.uniform_groups(embeddings.shape[0], self.target(spans))
        return segment_mean(embeddings, starts, ends), group_spans(spans, starts, ends)

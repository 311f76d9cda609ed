"""Uniform average pooling of consecutive frames (Bhati et al.; Qwen2-Audio's AvgPool1d(2) is k = 2)."""

from __future__ import annotations

import torch

from speechpress.presses.base import Press, PressContext, equal_groups, group_spans, segment_mean, span_duration
from speechpress.presses.registry import register_press


@register_press
class AvgPoolPress(Press):
    name = "avgpool"
    description = "uniform average pooling of k consecutive frames (Bhati et al.)"

    def compress_row(self, embeddings, spans, context: PressContext, index: int):
        n = embeddings.shape[0]
        n_out = self.output_length(n, span_duration(spans))
        k = self.ratio
        if self.tokens_per_second is None and k is not None and float(k).is_integer():
            # Integer k: a plain kernel-k, stride-k pool; the last group may be shorter.
            k = int(k)
            starts = torch.arange(0, n, k)
            ends = torch.clamp(starts + k, max=n)
        else:
            starts, ends = equal_groups(n, n_out)
        return segment_mean(embeddings, starts, ends), group_spans(spans, starts, ends)

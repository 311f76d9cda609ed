"""SnapKV (Li et al. 2024) with the question as the observation window: the audio entries the question's tokens
attend to most, smoothed over neighbours (average pooling, kernel 5, as SnapKV and kvpress do), survive per layer
and KV head. The question is read during compression, so each question gets its own prefill."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from speechpress.errors import PressError
from speechpress.presses.kv_observed import ObservedAttentionPress
from speechpress.presses.registry import register_press


@register_press
class SnapKVPress(ObservedAttentionPress):
    name = "snapkv"
    description = "KV cache: keep the audio entries the question attends to most, pooled over neighbours (SnapKV)"
    paper = "SnapKV's pooled observation-window attention (kernel 5), the window being the question"
    query_aware = True

    def __init__(self, ratio: float | None = None, tokens_per_second: float | None = None, *, kernel_size: int = 5):
        super().__init__(ratio, tokens_per_second)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise PressError(f"snapkv kernel_size must be an odd whole number >= 1, got {kernel_size!r}")
        self.kernel_size = kernel_size

    def window(self, prefix_embeds, audio_embeds, question_embeds):
        if question_embeds is None or question_embeds.shape[1] == 0:
            raise PressError("snapkv observes the question: prefill with question=...")
        return torch.cat([prefix_embeds, audio_embeds], dim=1), question_embeds.to(audio_embeds.dtype), False

    def smooth(self, scores):
        if self.kernel_size == 1:
            return scores
        b, h, n = scores.shape
        pooled = F.avg_pool1d(scores.reshape(b * h, 1, n), self.kernel_size, stride=1, padding=self.kernel_size // 2,
                              count_include_pad=False)
        return pooled.reshape(b, h, n)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}"

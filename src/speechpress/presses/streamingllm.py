"""StreamingLLM (Xiao et al. 2024) on the audio entries: keep the first ``sinks`` audio entries (attention sinks)
and the most recent ones, evict the middle. The prompt prefix is kept anyway, so it is a sink too."""

from __future__ import annotations

import torch

from speechpress.errors import PressError
from speechpress.presses.kv_scorer import KVScorerPress
from speechpress.presses.registry import register_press


@register_press
class StreamingLLMPress(KVScorerPress):
    name = "streamingllm"
    description = "KV cache: keep the first audio entries (sinks) and the most recent ones (StreamingLLM)"
    paper = "StreamingLLM's sinks + recent window (kvpress' StreamingLLMPress, n_sink 4), on the audio entries"

    def __init__(self, ratio: float | None = None, tokens_per_second: float | None = None, *, sinks: int = 4):
        super().__init__(ratio, tokens_per_second)
        if isinstance(sinks, bool) or not isinstance(sinks, int) or sinks < 0:
            raise PressError(f"streamingllm sinks must be a whole number >= 0, got {sinks!r}")
        self.sinks = sinks

    def score(self, keys, values, layer):
        n = keys.shape[-2]
        position = torch.arange(n, device=keys.device, dtype=torch.float32)
        # Sinks first (highest), then recency: the kept set is the sinks plus the latest entries.
        scores = torch.where(position < self.sinks, torch.full_like(position, 2.0 * n), position)
        return scores.expand(*keys.shape[:-2], n)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sinks={self.sinks}"

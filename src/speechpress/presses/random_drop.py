"""Random token drop: SpeechPrune's RAP baseline (random audio pruning, non-contiguous tokens).

Space "llm", like SpeechPrune, so the baselines prune the very tokens SpeechPrune prunes (dropping is per
token, so acting before the per-token projector would keep the same set anyway).

Seeding: with ``context.generator`` the draws come from it, row after row (the caller owns the stream).
Otherwise every row gets a fresh ``torch.Generator`` seeded with ``seed``, so a recording's kept tokens
depend only on the recording and the seed, never on what it is batched with.
"""

from __future__ import annotations

import torch

from speechpress.presses.base import Press, PressContext, span_duration
from speechpress.presses.registry import register_press


def row_generator(seed: int, context: PressContext) -> torch.Generator:
    """The caller's generator when given, else a fresh one at ``seed`` (shared by the random baselines)."""
    if context.generator is not None:
        return context.generator
    return torch.Generator().manual_seed(int(seed))


@register_press
class RandomDropPress(Press):
    name = "random"
    description = "random token drop, kept tokens in temporal order (SpeechPrune's RAP baseline)"
    space = "llm"

    def __init__(self, ratio: float | None = None, tokens_per_second: float | None = None, seed: int = 0):
        super().__init__(ratio, tokens_per_second)
        self.seed = seed

    def compress_row(self, embeddings, spans, context: PressContext, index: int):
        n = embeddings.shape[0]
        if n == 0:
            return embeddings, spans
        n_out = self.output_length(n, span_duration(spans))
        gen = row_generator(self.seed, context)
        keep = torch.randperm(n, generator=gen, device=gen.device)[:n_out].sort().values.cpu()
        return embeddings[keep.to(embeddings.device)], spans[keep.to(spans.device)]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, seed={self.seed}"

"""Random token drop: SpeechPrune's RAP baseline (random audio pruning, non-contiguous tokens).

Space "llm", like SpeechPrune, so the baselines prune the very tokens SpeechPrune prunes (dropping is per
token, so acting before the per-token projector would keep the same set anyway).

Seeding: with ``context.generator`` the draws come from it, row after row (the caller owns the stream).
Otherwise every row gets a fresh ``torch.Generator`` seeded with ``seed``, so a recording's kept tokens
depend only on the recording and the seed, never on what it is batched with.
"""

from __future__ import annotations

import torch

from speechpress.presses.base import PressContext, ScorerPress, row_generator
from speechpress.presses.registry import register_press

__all__ = ["RandomDropPress", "row_generator"]


@register_press
class RandomDropPress(ScorerPress):
    name = "random"
    description = "random token drop, kept tokens in temporal order (SpeechPrune's RAP baseline)"
    paper = "SpeechPrune's RAP baseline as is"
    space = "llm"

    def __init__(self, ratio: float | None = None, tokens_per_second: float | None = None, seed: int = 0):
        super().__init__(ratio, tokens_per_second)
        self.seed = seed

    def score(self, embeddings, spans, context: PressContext, index: int):
        """A random permutation as ranks: the first tokens it draws score highest."""
        n = embeddings.shape[0]
        gen = row_generator(self.seed, context)
        order = torch.randperm(n, generator=gen, device=gen.device)
        ranks = torch.empty(n, dtype=torch.long, device=order.device)
        ranks[order] = torch.arange(n, 0, -1, device=order.device)
        return ranks.cpu()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, seed={self.seed}"

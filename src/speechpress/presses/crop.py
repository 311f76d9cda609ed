"""Random crop: SpeechPrune's RAC baseline (one random contiguous span of ``n_out`` tokens survives).

Space "llm" and seeding exactly as in the random-drop baseline (see ``random_drop.py``).
"""

from __future__ import annotations

import torch

from speechpress.presses.base import PressContext, ScorerPress, row_generator
from speechpress.presses.registry import register_press


@register_press
class RandomCropPress(ScorerPress):
    name = "crop"
    description = "random contiguous crop of the target length (SpeechPrune's RAC baseline)"
    paper = "SpeechPrune's RAC baseline as is"
    space = "llm"

    def __init__(self, ratio: float | None = None, tokens_per_second: float | None = None, seed: int = 0):
        super().__init__(ratio, tokens_per_second)
        self.seed = seed

    def score(self, embeddings, spans, context: PressContext, index: int):
        """1 on one random window of the target length, 0 elsewhere."""
        n, n_out = embeddings.shape[0], self.target(spans)
        gen = row_generator(self.seed, context)
        start = int(torch.randint(0, n - n_out + 1, (1,), generator=gen, device=gen.device))
        scores = torch.zeros(n)
        scores[start : start + n_out] = 1.0
        return scores

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, seed={self.seed}"

"""Random crop: SpeechPrune's RAC baseline (one random contiguous span of ``n_out`` tokens survives).

Space "llm" and seeding exactly as in the random-drop baseline (see ``random_drop.py``).
"""

from __future__ import annotations

import torch

from speechpress.presses.base import Press, PressContext, span_duration
from speechpress.presses.random_drop import row_generator
from speechpress.presses.registry import register_press


@register_press
class RandomCropPress(Press):
    name = "crop"
    description = "random contiguous crop of the target length (SpeechPrune's RAC baseline)"
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
        start = int(torch.randint(0, n - n_out + 1, (1,), generator=gen, device=gen.device))
        return embeddings[start : start + n_out], spans[start : start + n_out]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, seed={self.seed}"

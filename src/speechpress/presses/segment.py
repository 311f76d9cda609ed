"""Unsupervised segmentation pooling (Bhati et al., after Segmental CPC): merge frames between change points.

Dissimilarity ``d_t = 1 - cos(z_t, z_{t+1})`` marks a candidate boundary between frames t and t+1. Boundaries
are the local peaks of d (``d_t > d_{t-1}`` and ``d_t > d_{t+1}``; at either end the missing neighbour counts
as -inf). The paper keeps *every* peak, which gives a variable rate; to meet the ratio like every other press,
exactly ``n_out - 1`` boundaries are chosen: the highest peaks first, then, if there are too few peaks, the
highest remaining ``d_t``; ties go to the earlier position. Each segment is averaged into one token (the
average is differentiable; the boundary choice is not).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from speechpress.presses.base import Press, PressContext, group_spans, segment_mean
from speechpress.presses.registry import register_press


def dissimilarity(embeddings: torch.Tensor) -> torch.Tensor:
    """``d_t = 1 - cos(z_t, z_{t+1})`` for t = 0..n-2, in float64 so ties and peaks do not depend on dtype."""
    z = embeddings.detach().to(torch.float64)
    return 1.0 - F.cosine_similarity(z[:-1], z[1:], dim=-1)


def choose_boundaries(d: torch.Tensor, count: int) -> torch.Tensor:
    """Sorted positions t (a boundary between frames t and t+1): peaks by height, then the highest non-peaks."""
    m = d.numel()
    count = max(0, min(count, m))
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    values = d.cpu().numpy()
    left = np.concatenate([[-np.inf], values[:-1]])
    right = np.concatenate([values[1:], [-np.inf]])
    peak = (values > left) & (values > right)
    # np.lexsort sorts by the last key first: peaks before non-peaks, then higher d, then earlier t.
    order = np.lexsort((np.arange(m), -values, ~peak))
    return torch.from_numpy(np.sort(order[:count])).long()


@register_press
class SegmentPress(Press):
    name = "segment"
    description = "unsupervised segmentation: average frames between cosine change points (Bhati et al.)"
    space = "encoder"

    def compress_row(self, embeddings, spans, context: PressContext, index: int):
        n, n_out = embeddings.shape[0], self.target(spans)
        cuts = choose_boundaries(dissimilarity(embeddings), n_out - 1) if n > 1 else torch.zeros(0, dtype=torch.long)
        starts = torch.cat([torch.zeros(1, dtype=torch.long), cuts + 1])
        ends = torch.cat([cuts + 1, torch.tensor([n])])
        return segment_mean(embeddings, starts, ends), group_spans(spans, starts, ends)

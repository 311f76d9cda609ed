"""Unsupervised segmentation pooling (Bhati et al., after Segmental CPC): merge frames between change points.

Dissimilarity ``d_t = 1 - cos(z_t, z_{t+1})`` marks a candidate boundary between frames t and t+1. Boundaries
are the local peaks of d (``d_t > d_{t-1}`` and ``d_t > d_{t+1}``; at either end the missing neighbour counts
as -inf). The paper keeps *every* peak, which gives a variable rate that follows the speech:
``variable_rate=True`` does that (no ratio; the count depends on the content, so the analytic cost model refuses
it and results report the measured count). By default, to meet a ratio like every other press, exactly
``n_out - 1`` boundaries are chosen: the highest peaks first, then, if there are too few peaks, the highest
remaining ``d_t``; ties go to the earlier position. Each segment is averaged into one token (the average is
differentiable; the boundary choice is not).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from speechpress.errors import PressError
from speechpress.presses.base import Press, PressContext, group_spans, segment_mean
from speechpress.presses.registry import register_press


def dissimilarity(embeddings: torch.Tensor) -> torch.Tensor:
    """``d_t = 1 - cos(z_t, z_{t+1})`` for t = 0..n-2, in float64 so ties and peaks do not depend on dtype."""
    z = embeddings.detach().to(torch.float64)
    return 1.0 - F.cosine_similarity(z[:-1], z[1:], dim=-1)


def _is_peak(values: np.ndarray) -> np.ndarray:
    left = np.concatenate([[-np.inf], values[:-1]])
    right = np.concatenate([values[1:], [-np.inf]])
    return (values > left) & (values > right)


def peaks(d: torch.Tensor) -> torch.Tensor:
    """Every local peak of ``d`` (the paper's boundaries), sorted."""
    return torch.from_numpy(np.flatnonzero(_is_peak(d.cpu().numpy()))).long()


def choose_boundaries(d: torch.Tensor, count: int) -> torch.Tensor:
    """Sorted positions t (a boundary between frames t and t+1): peaks by height, then the highest non-peaks."""
    m = d.numel()
    count = max(0, min(count, m))
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    values = d.cpu().numpy()
    peak = _is_peak(values)
    # np.lexsort sorts by the last key first: peaks before non-peaks, then higher d, then earlier t.
    order = np.lexsort((np.arange(m), -values, ~peak))
    return torch.from_numpy(np.sort(order[:count])).long()


@register_press
class SegmentPress(Press):
    name = "segment"
    description = "unsupervised segmentation: average frames between cosine change points (Bhati et al.)"
    paper = "paper: --press-option variable_rate=true (every peak; default: exactly the requested count)"
    space = "encoder"

    def __init__(self, ratio: float | None = None, tokens_per_second: float | None = None, *, variable_rate: bool = False):
        super().__init__(ratio, tokens_per_second)
        if variable_rate and (ratio is not None or tokens_per_second is not None):
            raise PressError("segment with variable_rate keeps every peak (the paper's rate follows the speech): give no ratio")
        self.variable_rate = bool(variable_rate)
        self.variable_length = self.variable_rate  # the cost model then refuses to cost it from a count
        self.default_target = self.variable_rate

    def output_length(self, n_in: int, duration_s: float | None = None) -> int:
        if self.variable_rate:  # an upper bound: peaks are at least two positions apart
            return (n_in + 1) // 2 if n_in > 1 else n_in
        return super().output_length(n_in, duration_s)

    def compress_row(self, embeddings, spans, context: PressContext, index: int):
        n = embeddings.shape[0]
        if self.variable_rate:
            cuts = peaks(dissimilarity(embeddings)) if n > 1 else torch.zeros(0, dtype=torch.long)
        else:
            n_out = self.target(spans)
            cuts = choose_boundaries(dissimilarity(embeddings), n_out - 1) if n > 1 else torch.zeros(0, dtype=torch.long)
        starts = torch.cat([torch.zeros(1, dtype=torch.long), cuts + 1])
        ends = torch.cat([cuts + 1, torch.tensor([n])])
        return segment_mean(embeddings, starts, ends), group_spans(spans, starts, ends)

"""Key-norm eviction (Devoto et al. 2024, kvpress' ``KnormPress``): entries whose keys have the smallest L2 norm
draw the most attention, so the audio entries with the largest key norms are evicted, per layer and KV head."""

from __future__ import annotations

from speechpress.presses.kv_scorer import KVScorerPress
from speechpress.presses.registry import register_press


@register_press
class KnormPress(KVScorerPress):
    name = "knorm"
    description = "KV cache: evict the audio entries with the largest key norm, per layer and head (kvpress' knorm)"
    paper = "kvpress' KnormPress as is, on the audio entries only"

    def score(self, keys, values, layer):
        return -keys.float().norm(dim=-1)

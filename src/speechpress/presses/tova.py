"""TOVA (Oren et al. 2024) at the end of the audio: the last audio token's attention, averaged over the query
heads of each KV group, ranks the audio entries; the best survive per layer and KV head (kvpress' one-shot
TOVAPress; TOVA itself repeats this at every generated token, which a prefill press does not)."""

from __future__ import annotations

from speechpress.presses.kv_observed import ObservedAttentionPress
from speechpress.presses.registry import register_press


@register_press
class TOVAPress(ObservedAttentionPress):
    name = "tova"
    description = "KV cache: keep the audio entries the last audio token attends to most (TOVA, one shot)"
    paper = "kvpress' TOVAPress (one shot at the end of the context), on the audio entries"

    def window(self, prefix_embeds, audio_embeds, question_embeds):
        import torch

        return torch.cat([prefix_embeds, audio_embeds[:, :-1]], dim=1), audio_embeds[:, -1:], True

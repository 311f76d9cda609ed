"""Score-then-evict by observed attention: after the full prefill, an observation window of tokens attends over the
cache (the LLM's own attention, eager, so every RoPE variant is the model's), and each audio entry scores the
attention it receives, per layer and KV head (query heads of a group averaged), the best ``output_length`` kept.

The window is the question for SnapKV (so it is query-aware: one prefill per question, like SpeechPrune, and
every result row says so) and the last audio token for TOVA. A window that is not part of the context (the
question) is removed from the cache again before the audio entries are evicted; the answer appends it later.
"""

from __future__ import annotations

import torch
from torch import nn

from speechpress import kv_cache
from speechpress.errors import PressError
from speechpress.kv_cache import KVState
from speechpress.presses.base import top_in_order
from speechpress.presses.kv_scorer import KVScorerPress


class ObservedAttentionPress(KVScorerPress):
    """Subclasses say which tokens observe (:meth:`window`) and may smooth the scores (:meth:`smooth`)."""

    def window(self, prefix_embeds, audio_embeds, question_embeds) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(context to prefill, observing tokens, whether the observers belong to the context and stay cached)."""
        raise NotImplementedError

    def smooth(self, scores: torch.Tensor) -> torch.Tensor:
        return scores

    def prefill(self, llm: nn.Module, prefix_embeds: torch.Tensor, audio_embeds: torch.Tensor, *,
                duration_s: float | None = None, audio_spans: torch.Tensor | None = None,
                question_embeds: torch.Tensor | None = None) -> KVState:
        n_prefix, n_audio = prefix_embeds.shape[1], audio_embeds.shape[1]
        n_keep = self.output_length(n_audio, duration_s)
        context, observers, observers_stay = self.window(prefix_embeds, audio_embeds, question_embeds)
        decoder = llm.get_decoder() if hasattr(llm, "get_decoder") else llm.base_model
        state = KVState(cache=None, next_position=0, kept_tokens=0, dtype=audio_embeds.dtype, device=audio_embeds.device)
        split = context.shape[1]
        out = decoder(inputs_embeds=context, use_cache=True)
        cache = out.past_key_values
        attentions = observed_attention(decoder, cache, observers, split)
        if not observers_stay:
            kv_cache.truncate(cache, split, copy=True)
        if n_keep < n_audio:
            for index, (layer, probs) in enumerate(zip(cache.layers, attentions)):
                kv_heads = layer.keys.shape[1]
                received = probs[..., n_prefix : n_prefix + n_audio].float()  # [B, H, L, n]
                received = received.reshape(received.shape[0], kv_heads, -1, n_audio).mean(dim=2)  # query heads of a group, window
                kv_cache.keep_per_head(layer, n_prefix, top_in_order(self.smooth(received), n_keep))
        state.cache = cache
        state.next_position = n_prefix + n_audio
        state.kept_tokens = state.cache_length()
        return state


def observed_attention(decoder: nn.Module, cache, observers: torch.Tensor, start: int) -> list[torch.Tensor]:
    """Per layer, the attention [B, H, L, T] of ``observers`` (at positions ``start`` ...) over the cache and
    themselves, computed by the model's own eager attention."""
    config = decoder.config
    previous = getattr(config, "_attn_implementation", None)
    try:
        config._attn_implementation = "eager"
        positions = torch.arange(start, start + observers.shape[1], device=observers.device)[None]
        out = decoder(inputs_embeds=observers, past_key_values=cache, position_ids=positions, use_cache=True,
                      output_attentions=True)
    finally:
        config._attn_implementation = previous
    if out.attentions is None or any(a is None for a in out.attentions):
        raise PressError("this LLM did not return attention weights; observed-attention presses need eager attention")
    return list(out.attentions)

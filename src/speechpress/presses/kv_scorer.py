"""Score-then-evict on the KV cache (kvpress' scorer presses, written for speechpress): during prefill, right after
each decoder layer has written its keys and values, score that layer's audio entries per KV head and keep the best
``output_length`` of them, in temporal order; the prompt prefix is never touched.

Why a hook per layer: the layer's attention has already run when its entries are evicted, so the prefill's
output is exactly the uncompressed one, and the cache of an evicting layer is cut before the next layer fills
its own (kvpress does the same). Evicted entries are freed (``kv_cache.keep_per_head`` copies what is kept).
Positions stay time-preserving: the question continues at ``prefix + audio tokens``, like SST.

A subclass says how entries score (:meth:`KVScorerPress.score`); higher is kept.
"""

from __future__ import annotations

import torch
from torch import nn

from speechpress import kv_cache
from speechpress.errors import PressError
from speechpress.kv_cache import KVState
from speechpress.presses.base import AudioTokens, Press, PressContext, top_in_order


class KVScorerPress(Press):
    space = "kv"

    def score(self, keys: torch.Tensor, values: torch.Tensor, layer: int) -> torch.Tensor:
        """[B, H, n] scores of the audio entries (``keys``/``values`` [B, H, n, d]) of decoder layer ``layer``."""
        raise NotImplementedError(f"{type(self).__name__} must implement score")

    def forward(self, tokens: AudioTokens, context: PressContext | None = None) -> AudioTokens:
        raise PressError(f"the {self.name!r} press acts on the LLM's KV cache during prefill, not on token sequences")

    def prefill(self, llm: nn.Module, prefix_embeds: torch.Tensor, audio_embeds: torch.Tensor, *,
                duration_s: float | None = None, audio_spans: torch.Tensor | None = None) -> KVState:
        n_prefix, n_audio = prefix_embeds.shape[1], audio_embeds.shape[1]
        n_keep = self.output_length(n_audio, duration_s)
        decoder = llm.get_decoder() if hasattr(llm, "get_decoder") else llm.base_model
        layers = getattr(decoder, "layers", None)
        if layers is None or not all(hasattr(layer, "self_attn") for layer in layers):
            raise PressError(f"the {self.name!r} press needs a decoder whose layers have self_attn; got {type(llm).__name__}")

        def evict(module, args, kwargs, output):
            cache = kwargs.get("past_key_values")
            if cache is None or n_keep >= n_audio:
                return
            index = module.layer_idx
            layer = cache.layers[index]
            audio = slice(n_prefix, n_prefix + n_audio)
            scores = self.score(layer.keys[..., audio, :], layer.values[..., audio, :], index)
            keep = top_in_order(scores.float(), n_keep)
            kv_cache.keep_per_head(layer, n_prefix, keep)

        hooks = [layer.self_attn.register_forward_hook(evict, with_kwargs=True) for layer in layers]
        try:
            state = kv_cache.full_prefill(llm, prefix_embeds, audio_embeds)
        finally:
            for hook in hooks:
                hook.remove()
        state.kept_tokens = state.cache_length()
        return state


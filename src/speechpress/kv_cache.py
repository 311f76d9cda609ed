"""Every change made to a transformers KV cache, in one place: prefill, eviction, rewinding, size.

Presses and ``SpeechLM`` never slice cache layers themselves, so a change of transformers' cache layout (or a
KV press that needs a new kind of surgery) touches this module only. Savings are real: eviction copies what is
kept, so what is dropped is freed, never merely masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVState:
    """The LLM state after prefilling [prefix + audio]: the cache and the RoPE position of the next token.

    ``next_position`` may run ahead of the cache length once a KV press evicted entries (positions are
    time-preserving); ``kept_tokens`` is the cache length right after prefill.
    """

    cache: object  # transformers Cache
    next_position: int
    kept_tokens: int

    def cache_length(self) -> int:
        return int(self.cache.get_seq_length())

    def position(self) -> int:
        """RoPE position of the next token to append (after whatever was appended since prefill)."""
        return self.next_position + self.cache_length() - self.kept_tokens

    def rewind(self) -> None:
        """Drop every token appended after prefill so another question can be asked of the same audio."""
        truncate(self.cache, self.kept_tokens, copy=True)

    def kv_bytes(self) -> int:
        return nbytes(self.cache)


def full_prefill(llm, prefix_embeds: torch.Tensor, audio_embeds: torch.Tensor) -> KVState:
    """One forward of [prefix + audio] through the LLM body (no logits: none are needed), everything cached."""
    out = llm.base_model(inputs_embeds=torch.cat([prefix_embeds, audio_embeds], dim=1), use_cache=True)
    n = prefix_embeds.shape[1] + audio_embeds.shape[1]
    return KVState(cache=out.past_key_values, next_position=n, kept_tokens=n)


def truncate(cache, length: int, copy: bool = False) -> None:
    """Drop every entry after the first ``length`` on every layer; ``copy`` frees the dropped memory at once."""
    for layer in cache.layers:
        if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.shape[-2] > length:
            keys, values = layer.keys[..., :length, :], layer.values[..., :length, :]
            layer.keys, layer.values = (keys.clone(), values.clone()) if copy else (keys, values)


def keep(cache, index: torch.Tensor) -> None:
    """Keep only the entries at ``index`` (ascending positions) on every layer; index_select copies, so the
    evicted keys and values are freed."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(-2, index)
        layer.values = layer.values.index_select(-2, index)


def nbytes(cache) -> int:
    """Bytes of every key and value tensor a transformers cache holds (``layers`` API or legacy tuples)."""
    if cache is None:
        return 0
    layers = getattr(cache, "layers", None)
    tensors = (
        [getattr(layer, name, None) for layer in layers for name in ("keys", "values")]
        if layers is not None
        else [t for item in cache for t in item]
    )
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

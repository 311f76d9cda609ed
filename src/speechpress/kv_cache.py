"""Every change made to a transformers KV cache, in one place: prefill, eviction, rewinding, size.

Presses and ``SpeechLM`` never slice cache layers themselves, so a change of transformers' cache layout (or a
KV press that needs a new kind of surgery) touches this module only. Savings are real: eviction copies what is
kept, so what is dropped is freed, never merely masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from speechpress.errors import ConfigError, PressError


@dataclass
class KVState:
    """The LLM state after prefilling [prefix + audio]: the cache and the RoPE position of the next token.

    ``next_position`` may run ahead of the cache length once a KV press evicted entries (positions are
    time-preserving); ``kept_tokens`` is the cache length right after prefill.
    """

    cache: object  # transformers Cache
    next_position: int
    kept_tokens: int
    dtype: torch.dtype = torch.float32
    device: torch.device | str = "cpu"

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

    def step_inputs(self, n_new: int) -> dict:
        """Keyword arguments for ``llm(inputs_embeds=x, **state.step_inputs(x.shape[1]))``.

        Gives ``past_key_values``, explicit ``position_ids`` (needed: after eviction positions run ahead of the
        cache length, and transformers would infer them from the length) and a 4D mask (everything cached
        visible, causal among the new tokens); call again before each step.
        """
        if n_new < 1:
            raise PressError(f"step_inputs needs at least one new token, got {n_new}")
        start = self.position()
        return dict(
            past_key_values=self.cache,
            position_ids=torch.arange(start, start + n_new, device=self.device)[None],
            attention_mask=chunk_mask(n_new, self.cache_length(), self.dtype, self.device),
            use_cache=True,
        )


def full_prefill(llm, prefix_embeds: torch.Tensor, audio_embeds: torch.Tensor) -> KVState:
    """One forward of [prefix + audio] through the LLM body (no logits: none are needed), everything cached."""
    out = llm.base_model(inputs_embeds=torch.cat([prefix_embeds, audio_embeds], dim=1), use_cache=True)
    n = prefix_embeds.shape[1] + audio_embeds.shape[1]
    return KVState(cache=out.past_key_values, next_position=n, kept_tokens=n, dtype=audio_embeds.dtype,
                   device=audio_embeds.device)


# A chunk's queries see every cached entry, so transformers hands SDPA a [chunk, cache + chunk] mask, which the CPU
# kernel converts to float (5 bytes an element in all). Chunks shrink as the cache grows so that mask stays under
# this many elements: what a long prefill holds beyond its KV cache is then bounded, never proportional to it.
PREFILL_MASK_ELEMENTS = 1 << 23
PREFILL_CHUNK_TOKENS = (128, 2048)  # the smallest and largest chunk
# Up to this many tokens a prefill is one forward: chunks cost speed (SmolLM2-135M on 2 CPU cores, 7,500 tokens:
# 20.5-21.5 s in one forward, 25.4-28.7 s in chunks, SDPA's mask-free causal path against a [chunk, cache] mask),
# and below it what one forward holds beyond the cache is a few hundred MB; above it (hours of audio into a long-
# context LLM) memory wins.
PREFILL_ONE_FORWARD_TOKENS = 8192


def prefill_chunks(n: int, past: int = 0) -> list[int]:
    """Sizes of the chunks that run ``n`` tokens through the LLM after ``past`` cached ones (see
    :func:`chunked_prefill`)."""
    if n <= PREFILL_ONE_FORWARD_TOKENS:
        return [n] if n else []
    low, high = PREFILL_CHUNK_TOKENS
    sizes = []
    while n > 0:
        size = min(n, high, max(low, PREFILL_MASK_ELEMENTS // (past + high)))
        sizes.append(size)
        n, past = n - size, past + size
    return sizes


def chunked_prefill(llm, prefix_embeds: torch.Tensor, audio_embeds: torch.Tensor) -> KVState:
    """[prefix + audio] through the LLM body in chunks appended to one cache: the same cache as one forward (each
    token attends to the same entries), but the activations held at once are a chunk's, not the whole
    sequence's (an hour at x4 is 22,500 tokens: about 24 KB each through the tiny LLM at once). Each layer's keys
    and values are written into one buffer of the final length (``_fill_in_place``), so no chunk copies the cache."""
    n = prefix_embeds.shape[1] + audio_embeds.shape[1]
    sizes = prefill_chunks(n)
    if len(sizes) <= 1:
        return full_prefill(llm, prefix_embeds, audio_embeds)
    embeds = torch.cat([prefix_embeds, audio_embeds], dim=1)
    cache, start, filled = None, 0, []
    for size in sizes:
        positions = torch.arange(start, start + size, device=embeds.device)[None]
        out = llm.base_model(inputs_embeds=embeds[:, start : start + size], past_key_values=cache,
                             position_ids=positions, use_cache=True)
        cache, start = out.past_key_values, start + size
        del out
        if start == size and start < n:  # after the first chunk the cache's layers exist
            filled = _fill_in_place(cache, n)
    _fill_done(filled)
    return KVState(cache=cache, next_position=n, kept_tokens=n, dtype=audio_embeds.dtype, device=audio_embeds.device)


def _fill_in_place(cache, capacity: int) -> list:
    """While a prefill of known length runs, every plain DynamicLayer of ``cache`` writes its new keys and values
    into buffers of ``capacity`` entries instead of concatenating (a copy of the whole layer per chunk, through
    buffers that grow in the heap); other layer kinds are left alone."""
    from transformers.cache_utils import DynamicLayer

    filled_layers = []
    for layer in getattr(cache, "layers", ()):
        if type(layer) is not DynamicLayer or not getattr(layer, "is_initialized", True) or layer.keys is None:
            continue
        done = layer.keys.shape[-2]
        buffers = []
        for t in (layer.keys, layer.values):
            buffer = t.new_empty(*t.shape[:-2], capacity, t.shape[-1])
            buffer[..., :done, :] = t
            buffers.append(buffer)
        layer.keys, layer.values = (buffer[..., :done, :] for buffer in buffers)

        def update(key_states, value_states, *args, layer=layer, buffers=buffers, **kwargs):
            start = layer.keys.shape[-2]
            end = start + key_states.shape[-2]
            buffers[0][..., start:end, :] = key_states
            buffers[1][..., start:end, :] = value_states
            layer.keys, layer.values = buffers[0][..., :end, :], buffers[1][..., :end, :]
            return layer.keys, layer.values

        layer.update = update  # an instance attribute: the class's own update again once it is deleted
        filled_layers.append((layer, buffers))
    return filled_layers


def _fill_done(filled_layers: list) -> None:
    """Plain DynamicLayers again (decoding appends to them as usual), each holding its whole buffer."""
    for layer, (keys, values) in filled_layers:
        del layer.update
        if layer.keys.shape != keys.shape:
            raise PressError(f"chunked prefill filled {layer.keys.shape[-2]} of {keys.shape[-2]} cache entries")
        layer.keys, layer.values = keys, values


def chunk_mask(q_len: int, past_len: int, dtype: torch.dtype, device: torch.device | str | None = None) -> torch.Tensor:
    """Additive [1, 1, q_len, past_len + q_len] mask: everything cached is visible, causal among the new tokens."""
    allowed = torch.ones(q_len, past_len + q_len, dtype=torch.bool, device=device)
    allowed[:, past_len:] = torch.ones(q_len, q_len, dtype=torch.bool, device=device).tril()
    return additive_mask(allowed, dtype)[None, None]


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where attention is allowed, the dtype's minimum elsewhere: the float 4D mask eager and sdpa both add."""
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    neg = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, neg)


def check_evictable(cache) -> None:
    """Eviction rewrites every layer's keys and values: only plain DynamicLayer caches take that safely."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if not isinstance(cache, DynamicCache):
        raise PressError(f"evicting KV entries needs a transformers DynamicCache, got {type(cache).__name__}")
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        raise ConfigError("KV entries are evicted from plain DynamicLayer caches only (no sliding/static layers)")


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


def keep_per_head(layer, n_prefix: int, audio_index: torch.Tensor) -> None:
    """Keep one layer's prefix entries and, per KV head, the audio entries ``audio_index`` [B, H, k] (ascending,
    counted from the first audio entry); every head keeps the same count, so the cache stays rectangular and the
    evicted keys and values are freed (gather copies)."""
    b, h, _, d = layer.keys.shape
    prefix = torch.arange(n_prefix, device=layer.keys.device).expand(b, h, n_prefix)
    index = torch.cat([prefix, audio_index.to(layer.keys.device) + n_prefix], dim=-1)[..., None].expand(-1, -1, -1, d)
    layer.keys = layer.keys.gather(2, index)
    layer.values = layer.values.gather(2, index)


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


@torch.no_grad()
def greedy_generate(llm, state: KVState, suffix_embeds: torch.Tensor, max_new_tokens: int,
                    eos_token_id: int | None = None) -> list[int]:
    """Greedy decoding on a bare LLM after a prefill that may have evicted entries: feed the suffix (question +
    assistant turn start, [1, S, D]), then one token at a time, always with ``state.step_inputs`` positions and
    mask (``llm.generate`` would infer positions from the cache length)."""
    if suffix_embeds.dim() != 3 or suffix_embeds.shape[0] != 1 or suffix_embeds.shape[1] < 1:
        raise PressError(f"suffix_embeds must be [1, S>=1, D], got {tuple(suffix_embeds.shape)}")
    embed = llm.get_input_embeddings()
    x = suffix_embeds
    out: list[int] = []
    for _ in range(max_new_tokens):
        logits = llm(inputs_embeds=x, **state.step_inputs(x.shape[1])).logits
        token = int(logits[0, -1].argmax())
        out.append(token)
        if eos_token_id is not None and token == eos_token_id:
            break
        x = embed(torch.tensor([[token]], device=suffix_embeds.device)).to(suffix_embeds.dtype)
    return out

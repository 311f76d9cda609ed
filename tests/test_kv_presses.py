"""KV-cache presses (score-then-evict during prefill): what they keep, that they free it, and that answering after
eviction runs on the same path as SST (time-preserving positions)."""

from __future__ import annotations

import pytest
import torch

from speechpress.errors import PressError
from speechpress.presses import build_press

from helpers import speech, tiny_model


def full_and_pressed(spec: str, seconds: float = 8.0):
    model = tiny_model()
    x = speech(seconds)
    encoded = model.encode(x)
    return model, model.prefill(x, encoded=encoded), model.prefill(x, spec, encoded=encoded)


def test_knorm_keeps_per_head_the_audio_entries_with_the_smallest_key_norms():
    """The pressed cache equals the full cache with, per layer and head, the k lowest-norm audio entries kept."""
    model, full, pressed = full_and_pressed("knorm:4")
    p, n = full.prefix_tokens, full.llm_audio_tokens  # 200 audio tokens -> 50 kept
    assert pressed.cached_audio_tokens == 50 and pressed.next_position == full.next_position == p + n
    for layer_full, layer_kept in zip(full.cache.layers, pressed.cache.layers):
        keys = layer_full.keys[..., p : p + n, :]
        keep = torch.sort(torch.topk(-keys.norm(dim=-1), 50, dim=-1).indices, dim=-1).values
        expect_k = keys.gather(2, keep[..., None].expand(-1, -1, -1, keys.shape[-1]))
        expect_v = layer_full.values[..., p : p + n, :].gather(2, keep[..., None].expand(-1, -1, -1, keys.shape[-1]))
        torch.testing.assert_close(layer_kept.keys[..., :p, :], layer_full.keys[..., :p, :], rtol=0, atol=0)
        torch.testing.assert_close(layer_kept.keys[..., p:, :], expect_k, rtol=0, atol=1e-6)
        torch.testing.assert_close(layer_kept.values[..., p:, :], expect_v, rtol=0, atol=1e-6)
    assert pressed.cache.layers[0].keys.shape[-2] == p + 50
    full_bytes = sum(l.keys.numel() + l.values.numel() for l in full.cache.layers)
    kept_bytes = sum(l.keys.numel() + l.values.numel() for l in pressed.cache.layers)
    assert kept_bytes / full_bytes == pytest.approx((p + 50) / (p + n))


def test_streamingllm_keeps_the_sinks_and_the_latest_entries():
    model, full, pressed = full_and_pressed("streamingllm:5")  # 200 -> 40: 4 sinks + the last 36
    p, n = full.prefix_tokens, full.llm_audio_tokens
    expected = list(range(4)) + list(range(n - 36, n))
    for layer_full, layer_kept in zip(full.cache.layers, pressed.cache.layers):
        torch.testing.assert_close(layer_kept.keys[..., p:, :], layer_full.keys[..., p + torch.tensor(expected), :], rtol=0, atol=1e-6)


def test_answers_after_eviction_use_time_preserving_positions_and_ratio_one_changes_nothing():
    model, full, _ = full_and_pressed("knorm:4")
    x = speech(8.0)
    same = model.prefill(x, "knorm:1")
    assert torch.equal(model.answer_logits(same, "Who?", "Maria"), model.answer_logits(full, "Who?", "Maria"))
    pressed = model.prefill(x, "avgpool:2+knorm:2")  # composes after a token press: x4 overall
    assert pressed.llm_audio_tokens == 100 and pressed.cached_audio_tokens == 50
    answer = model.answer(pressed, "Who?", max_new_tokens=4)
    assert answer.cached_audio_tokens == 50 and len(answer.token_ids) >= 1


def test_kv_presses_refuse_token_sequences_and_bad_options():
    with pytest.raises(PressError, match="KV cache"):
        build_press("knorm", ratio=2)(None)
    with pytest.raises(PressError, match="sinks"):
        build_press("streamingllm", ratio=2, sinks=-1)

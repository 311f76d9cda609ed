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


def reference_keep(model, sequence: torch.Tensor, rows: slice, p: int, n: int, k: int, pool: int = 1):
    """Kept audio entries per layer and KV head from one eager forward of the whole ``sequence``: the attention
    of the observing ``rows`` over the audio columns, query heads of a group and rows averaged, top ``k``."""
    decoder = model.llm.get_decoder()
    previous = decoder.config._attn_implementation
    decoder.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            attentions = decoder(inputs_embeds=sequence, output_attentions=True).attentions
    finally:
        decoder.config._attn_implementation = previous
    keeps = []
    for probs in attentions:
        kv_heads = model.llm.config.num_key_value_heads
        scores = probs[:, :, rows, p : p + n].float()
        scores = scores.reshape(1, kv_heads, -1, n).mean(dim=2)
        if pool > 1:
            scores = torch.nn.functional.avg_pool1d(scores.reshape(kv_heads, 1, n), pool, 1, pool // 2, count_include_pad=False).reshape(1, kv_heads, n)
        keeps.append(torch.sort(torch.topk(scores, k, dim=-1, sorted=True).indices, dim=-1).values)
    return keeps


def kept_audio_keys(full, keeps, p, n):
    out = []
    for layer, keep in zip(full.cache.layers, keeps):
        keys = layer.keys[..., p : p + n, :]
        out.append(keys.gather(2, keep[..., None].expand(-1, -1, -1, keys.shape[-1])))
    return out


@pytest.mark.parametrize("kernel", [1, 5])
def test_snapkv_keeps_what_the_question_attends_to_as_one_eager_forward_says(kernel):
    model = tiny_model()
    x = speech(8.0)
    encoded = model.encode(x)
    full = model.prefill(x, encoded=encoded)
    question = "Where does the meeting take place?"
    pressed = model.prefill(x, "snapkv:4", question=question, encoded=encoded, **({} if kernel == 5 else {}))
    if kernel == 1:
        pressed = model.prefill(x, model.press_chain("snapkv:4", options={"kernel_size": 1}), question=question, encoded=encoded)
    assert pressed.query_in_compression and pressed.cached_audio_tokens == 50
    p, n = full.prefix_tokens, full.llm_audio_tokens
    prefix_ids, _ = model.prompt_ids(None)
    q_ids = model.tokenizer(question, add_special_tokens=False)["input_ids"]
    audio = model.press_tokens(encoded, model.press_chain("identity")).embeddings[:, :n]
    sequence = torch.cat([model.embed_ids(prefix_ids), audio, model.embed_ids(q_ids)], dim=1)
    keeps = reference_keep(model, sequence, slice(p + n, p + n + len(q_ids)), p, n, 50, pool=kernel)
    for got, expected in zip([l.keys[..., p:, :] for l in pressed.cache.layers], kept_audio_keys(full, keeps, p, n)):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    other = model.prefill(x, "snapkv:4", question="Who presents the budget figures?", encoded=encoded)
    assert any(not torch.equal(a.keys, b.keys) for a, b in zip(other.cache.layers, pressed.cache.layers))
    with pytest.raises(PressError, match="question"):
        model.prefill(x, "snapkv:4", encoded=encoded)


def test_tova_keeps_what_the_last_audio_token_attends_to():
    model = tiny_model()
    x = speech(8.0)
    encoded = model.encode(x)
    full = model.prefill(x, encoded=encoded)
    pressed = model.prefill(x, "tova:4", encoded=encoded)
    p, n = full.prefix_tokens, full.llm_audio_tokens
    prefix_ids, _ = model.prompt_ids(None)
    audio = model.press_tokens(encoded, model.press_chain("identity")).embeddings[:, :n]
    sequence = torch.cat([model.embed_ids(prefix_ids), audio], dim=1)
    keeps = reference_keep(model, sequence, slice(p + n - 1, p + n), p, n, 50)
    for got, expected in zip([l.keys[..., p:, :] for l in pressed.cache.layers], kept_audio_keys(full, keeps, p, n)):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert pressed.next_position == p + n and model.answer(pressed, "Who?", max_new_tokens=2).cached_audio_tokens == 50


def test_the_kvpress_adapter_says_why_it_cannot_run(tmp_path):
    """Not installed: a one-line reason. Installed but declaring another transformers range (the real kvpress 0.5.5
    wheel, fetched from the package index when it can be): refused before any forward, with both versions."""
    import subprocess
    import sys

    from speechpress.presses import available_presses

    cls = available_presses()["kvpress"]
    try:
        import kvpress  # noqa: F401
    except ImportError:
        with pytest.raises(PressError, match="kvpress is not installed"):
            build_press("kvpress", ratio=2)
    target = tmp_path / "site"
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         "kvpress==0.5.5", "cachetools", "fire", "termcolor"], capture_output=True, text=True, timeout=300)
    if fetched.returncode != 0:
        pytest.skip(f"the kvpress 0.5.5 wheel could not be fetched: {fetched.stderr.strip().splitlines()[-1:]}")
    code = ("from speechpress.presses import build_press\n"
            "from speechpress.errors import PressError\n"
            "try:\n    build_press('kvpress', ratio=2)\nexcept PressError as e:\n    print('REFUSED', e)\n")
    env = {**__import__("os").environ, "PYTHONPATH": f"{target}:{__import__('os').environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300).stdout
    assert out.startswith("REFUSED kvpress 0.5.5 requires transformers<5.3") and "cache_position" in out, out
    assert cls.unavailable() is not None

"""Speech Summarization Tokens: the training path (one forward, 4D mask) must compute what streaming prefill
with real KV eviction computes, the cache must really shrink, and gradients must reach the SSTs."""

import math

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from speechpress.errors import ConfigError, PressError
from speechpress.presses import build_press
from speechpress.kv_cache import greedy_generate
from speechpress.presses.summary_tokens import SummaryTokenPress

D = 32
LAYERS = 2
KV_HEADS = 2
HEAD_DIM = D // 4


def tiny_llm(attn: str = "sdpa") -> Qwen2ForCausalLM:
    cfg = Qwen2Config(
        vocab_size=64,
        hidden_size=D,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=4096,
        rope_theta=10000.0,
    )
    cfg._attn_implementation = attn
    torch.manual_seed(1)
    return Qwen2ForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


def make_press(alpha=4, interval=12, num_embeddings=1) -> SummaryTokenPress:
    torch.manual_seed(2)
    press = SummaryTokenPress(ratio=alpha, dim=D, interval_tokens=interval, num_embeddings=num_embeddings)
    with torch.no_grad():  # SSTs at the scale of real inputs, so they matter in the logits
        press.embeddings.normal_()
    return press


def streaming_suffix_logits(press, llm, prefix, audio, suffix, alpha=None):
    state = press.prefill(llm, prefix, audio, alpha=alpha)
    return llm(inputs_embeds=suffix, **state.step_inputs(suffix.shape[1])).logits[0], state


def training_suffix_logits(press, llm, prefix, audio, suffix, alpha=None):
    batch = press.training_inputs(prefix, audio, torch.tensor([audio.shape[1]]), suffix, None, alpha)
    logits = llm(
        inputs_embeds=batch["inputs_embeds"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
    ).logits
    return logits[0, batch["suffix_index"][0]], batch


@pytest.mark.parametrize(
    "alpha,interval,n_audio,n_prefix,attn",
    [
        (2, 8, 37, 3, "sdpa"),  # ragged last interval (5 tokens), 37 not divisible by 2
        (4, 12, 50, 5, "sdpa"),  # ragged last interval of 2 tokens < alpha
        (8, 16, 61, 4, "sdpa"),  # 61 = 3 * 16 + 13: last group of 5 < alpha
        (8, 16, 64, 0, "sdpa"),  # exact intervals, no prompt prefix
        (4, 10, 33, 2, "eager"),  # interval not divisible by alpha: a ragged group in every interval
    ],
)
def test_training_path_equals_streaming(alpha, interval, n_audio, n_prefix, attn):
    llm = tiny_llm(attn)
    press = make_press(alpha, interval)
    prefix, audio, suffix = torch.randn(1, n_prefix, D), torch.randn(1, n_audio, D), torch.randn(1, 6, D)
    with torch.no_grad():
        stream, state = streaming_suffix_logits(press, llm, prefix, audio, suffix)
        train, batch = training_suffix_logits(press, llm, prefix, audio, suffix)
        # The same sequence under a plain causal mask (speech never evicted) must differ: the mask matters.
        plain = llm(inputs_embeds=batch["inputs_embeds"]).logits[0, batch["suffix_index"][0]]
    torch.testing.assert_close(train, stream, atol=1e-4, rtol=0)
    assert (plain - stream).abs().max() > 1e-3
    assert state.next_position == int(batch["suffix_start"][0]) == n_prefix + n_audio + state.sst_tokens


@pytest.mark.parametrize("alpha", [[2, 4, 8, 3, 1], lambda k: 2 ** (k % 3 + 1)])
def test_per_interval_alphas(llm, alpha):
    press = make_press(8, 10)
    prefix, audio, suffix = torch.randn(1, 3, D), torch.randn(1, 47, D), torch.randn(1, 4, D)
    with torch.no_grad():
        stream, state = streaming_suffix_logits(press, llm, prefix, audio, suffix, alpha)
        train, _ = training_suffix_logits(press, llm, prefix, audio, suffix, alpha)
    torch.testing.assert_close(train, stream, atol=1e-4, rtol=0)
    alphas = [alpha(k) for k in range(5)] if callable(alpha) else alpha
    assert state.alphas == alphas
    lengths = [10, 10, 10, 10, 7]
    assert state.sst_tokens == sum(math.ceil(n / a) for n, a in zip(lengths, alphas)) == press.sst_count(47, alpha)


def test_ragged_batch_rows_match_their_own_streaming(llm):
    """Two rows of different audio, suffix and prefix lengths, right-padded into one training batch."""
    press = make_press(4, 8)
    prefix, audio, suffix = torch.randn(2, 4, D), torch.randn(2, 30, D), torch.randn(2, 5, D)
    a_len, s_len, p_len = torch.tensor([30, 19]), torch.tensor([5, 3]), torch.tensor([4, 2])
    batch = press.training_inputs(prefix, audio, a_len, suffix, s_len, prefix_lengths=p_len)
    with torch.no_grad():
        logits = llm(
            inputs_embeds=batch["inputs_embeds"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        ).logits
        for b in range(2):
            s = int(s_len[b])
            stream, _ = streaming_suffix_logits(
                press, llm, prefix[b : b + 1, : p_len[b]], audio[b : b + 1, : a_len[b]], suffix[b : b + 1, :s]
            )
            torch.testing.assert_close(logits[b, batch["suffix_index"][b, :s]], stream, atol=1e-4, rtol=0)
            assert int(batch["suffix_mask"][b].sum()) == s
            assert int(batch["sst_mask"][b].sum()) == press.sst_count(int(a_len[b]))


@pytest.mark.parametrize("alpha,interval,n_audio", [(2, 8, 37), (4, 12, 50), (8, 16, 61), (8, 256, 1000)])
def test_cache_holds_prefix_plus_ssts_and_memory_is_freed(llm, alpha, interval, n_audio):
    press = make_press(alpha, interval)
    n_prefix = 3
    with torch.no_grad():
        state = press.prefill(llm, torch.randn(1, n_prefix, D), torch.randn(1, n_audio, D))
    n_sst = press.output_length(n_audio)
    assert n_sst == sum(math.ceil(min(interval, n_audio - s) / alpha) for s in range(0, n_audio, interval))
    assert state.sst_tokens == n_sst and state.audio_tokens == n_audio
    assert state.kept_tokens == n_prefix + n_sst
    assert len(state.cache.layers) == LAYERS
    for layer in state.cache.layers:
        assert layer.keys.shape == layer.values.shape == (1, KV_HEADS, n_prefix + n_sst, HEAD_DIM)
        for t in (layer.keys, layer.values):
            # Not a view into the pre-eviction tensor: the storage holds exactly the kept tokens.
            assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
    per_token_bytes = LAYERS * 2 * KV_HEADS * HEAD_DIM * 4  # keys + values, fp32
    assert state.kv_bytes() == (n_prefix + n_sst) * per_token_bytes


def test_gradients_reach_ssts_through_kept_kv(llm):
    press = make_press(4, 8)
    prefix, suffix = torch.randn(1, 2, D), torch.randn(1, 4, D)
    audio = torch.randn(1, 24, D, requires_grad=True)  # three intervals of 8
    logits, batch = training_suffix_logits(press, llm, prefix, audio, suffix)
    logits.logsumexp(-1).sum().backward()
    assert press.embeddings.grad is not None and press.embeddings.grad.abs().sum() > 0
    # Interval 1's speech reaches the suffix only through interval 1's SST keys/values.
    assert audio.grad[0, :8].abs().sum() > 0


def test_first_interval_ssts_influence_the_suffix(llm):
    press = make_press(4, 8)
    prefix, audio, suffix = torch.randn(1, 2, D), torch.randn(1, 24, D), torch.randn(1, 4, D)
    with torch.no_grad():
        base, state = streaming_suffix_logits(press, llm, prefix, audio, suffix)
        # Perturb only interval 1's SST keys/values in the cache (cache slots 2, 3 after a 2-token prefix).
        state2 = press.prefill(llm, prefix, audio)
        for layer in state2.cache.layers:
            layer.values[..., 2:4, :] += 1.0
        moved = llm(inputs_embeds=suffix, **state2.step_inputs(4)).logits[0]
        assert (moved - base).abs().max() > 1e-4
        # And on the training side: perturbing interval 1's first SST input changes the suffix logits.
        _, batch = training_suffix_logits(press, llm, prefix, audio, suffix)
        emb = batch["inputs_embeds"].clone()
        first_sst = int(torch.nonzero(batch["sst_mask"][0])[0])
        assert first_sst == 2 + 4  # after the prefix and alpha speech tokens
        emb[0, first_sst] += 1.0
        out = llm(inputs_embeds=emb, attention_mask=batch["attention_mask"], position_ids=batch["position_ids"])
        assert (out.logits[0, batch["suffix_index"][0]] - base).abs().max() > 1e-4


def test_greedy_generation_matches_training_path_loop(llm):
    press = make_press(4, 8)
    prefix, audio, suffix = torch.randn(1, 3, D), torch.randn(1, 21, D), torch.randn(1, 4, D)
    with torch.no_grad():
        state = press.prefill(llm, prefix, audio)
        tokens = greedy_generate(llm, state, suffix, max_new_tokens=5)
        assert len(tokens) == 5
        assert state.position() == state.next_position + 4 + 4  # suffix + 4 fed-back tokens
        expected, seq = [], suffix
        embed = llm.get_input_embeddings()
        for _ in range(5):
            logits, _ = training_suffix_logits(press, llm, prefix, audio, seq)
            expected.append(int(logits[-1].argmax()))
            seq = torch.cat([seq, embed(torch.tensor([[expected[-1]]]))], dim=1)
    assert tokens == expected


def test_rewind_lets_a_second_question_reuse_the_compressed_audio(llm):
    press = make_press(4, 8)
    prefix, audio = torch.randn(1, 3, D), torch.randn(1, 21, D)
    q1, q2 = torch.randn(1, 5, D), torch.randn(1, 3, D)
    with torch.no_grad():
        state = press.prefill(llm, prefix, audio)
        llm(inputs_embeds=q1, **state.step_inputs(5))
        assert state.cache_length() == state.kept_tokens + 5
        state.rewind()
        assert state.cache_length() == state.kept_tokens
        again = llm(inputs_embeds=q2, **state.step_inputs(3)).logits[0]
        fresh, _ = streaming_suffix_logits(press, llm, prefix, audio, q2)
    torch.testing.assert_close(again, fresh, atol=1e-5, rtol=0)


def test_streaming_continues_from_a_state(llm):
    """Audio arriving in two pieces at an interval boundary gives the same result as one prefill."""
    press = make_press(4, 8)
    prefix, audio, suffix = torch.randn(1, 3, D), torch.randn(1, 29, D), torch.randn(1, 4, D)
    alphas = [2, 4, 8, 4]
    with torch.no_grad():
        whole, state = streaming_suffix_logits(press, llm, prefix, audio, suffix, alphas)
        first = press.prefill(llm, prefix, audio[:, :16], alpha=alphas)
        second = press.prefill(llm, None, audio[:, 16:], cache=first, alpha=alphas)
        split = llm(inputs_embeds=suffix, **second.step_inputs(4)).logits[0]
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=0)
    assert (second.next_position, second.kept_tokens, second.sst_tokens) == (
        state.next_position,
        state.kept_tokens,
        state.sst_tokens,
    )


def test_works_with_a_lora_wrapped_llm_and_trains_both():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llm(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    for name, p in model.named_parameters():  # LoRA B starts at zero: move it so LoRA changes the output
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    press = make_press(4, 8)
    prefix, audio, suffix = torch.randn(1, 2, D), torch.randn(1, 20, D), torch.randn(1, 3, D)
    with torch.no_grad():
        stream, _ = streaming_suffix_logits(press, model, prefix, audio, suffix)
    train, _ = training_suffix_logits(press, model, prefix, audio, suffix)
    torch.testing.assert_close(train.detach(), stream, atol=1e-4, rtol=0)
    train.logsumexp(-1).sum().backward()
    assert press.embeddings.grad.abs().sum() > 0
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert lora_grads and all(g is not None and g.abs().sum() > 0 for g in lora_grads)


def test_registered_with_its_contract():
    press = build_press("sst", ratio=8, dim=D)
    assert isinstance(press, SummaryTokenPress)
    assert (press.space, press.trainable, press.query_aware) == ("kv", True, False)
    assert press.interval_tokens == 256
    assert [n for n, _ in press.named_parameters()] == ["embeddings"]
    assert press.output_length(7500) == 29 * 32 + math.ceil(76 / 8)  # 29 full intervals of 256 + 76 tokens
    # A tokens-per-second target is rounded to a whole alpha: 25 tok/s -> 3.125 tok/s is alpha 8.
    tps = build_press("sst", tokens_per_second=3.125, dim=D, interval_tokens=100)
    assert tps.default_alpha(250, duration_s=10.0) == 8
    assert tps.output_length(250, duration_s=10.0) == 13 + 13 + 7


def test_sst_spans_cover_their_groups():
    press = make_press(3, 7)
    spans = torch.stack([torch.arange(10.0), torch.arange(10.0) + 1], dim=-1) * 0.04
    out = press.sst_spans(spans)
    expected = torch.tensor([[0, 3], [3, 6], [6, 7], [7, 10]], dtype=spans.dtype) * 0.04
    torch.testing.assert_close(out, expected)


def test_errors_are_typed(llm):
    with pytest.raises(PressError, match="whole number"):
        SummaryTokenPress(ratio=2.5, dim=D)
    with pytest.raises(ConfigError, match="interval_tokens"):
        SummaryTokenPress(ratio=2, dim=D, interval_tokens=0)
    press = make_press(4, 8)
    with pytest.raises(PressError, match="interval 2 needs one"):
        press.prefill(llm, None, torch.randn(1, 20, D), alpha=[2, 4])
    with pytest.raises(PressError, match="whole number >= 1"):
        press.sst_count(20, alpha=0)
    with pytest.raises(PressError, match=r"\[batch, tokens, 32\]"):
        press.prefill(llm, None, torch.randn(1, 20, D + 1))
    with pytest.raises(PressError, match="batch 2"):
        press.prefill(llm, None, torch.randn(2, 20, D))
    with pytest.raises(PressError, match="inside the LLM"):
        press(None)
    flash = tiny_llm()
    flash.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ConfigError, match="eager' or 'sdpa"):
        press.prefill(flash, None, torch.randn(1, 20, D))
    with pytest.raises(PressError, match="duration"):
        SummaryTokenPress(tokens_per_second=3.0, dim=D).output_length(100)

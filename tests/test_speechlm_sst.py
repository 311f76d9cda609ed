"""SST inside the SpeechLM: the chain hands it LLM-space tokens, and the cache keeps only prefix + SSTs."""

import math

import torch

from speechpress.presses.summary_tokens import SummaryTokenPress

from helpers import speech, tiny_model


def test_sst_prefill_keeps_prefix_plus_ssts():
    model = tiny_model()
    x = speech(20.0)  # 500 tokens at 25/s
    context = model.prefill(x, "sst", ratio=8)
    chain = model.press_chain("sst", ratio=8)
    expected_ssts = chain[0].output_length(500)
    assert context.llm_audio_tokens == 500
    assert context.cached_audio_tokens == expected_ssts
    assert expected_ssts == sum(math.ceil(n / 8) for n in (256, 244))  # two intervals of the default 256 tokens
    assert context.cache.get_seq_length() == context.prefix_tokens + expected_ssts
    assert context.next_position == context.prefix_tokens + 500 + expected_ssts  # time-preserving positions


def test_avgpool_then_sst_composes_to_x16():
    model = tiny_model()
    x = speech(20.0)
    context = model.prefill(x, "avgpool:2+sst:8")
    assert context.llm_audio_tokens == 250
    assert context.cached_audio_tokens == math.ceil(250 / 8)  # one interval
    assert context.press == "avgpool:2+sst:8"


def test_sst_answers_from_the_same_context_twice():
    model = tiny_model()
    context = model.prefill(speech(12.0), "sst", ratio=4)
    a = model.answer(context, "Who?", max_new_tokens=5)
    b = model.answer(context, "Who?", max_new_tokens=5)
    assert a.token_ids == b.token_ids
    assert context.cache.get_seq_length() == context.cached_tokens


def test_sst_answer_logits_equal_training_path():
    """SpeechLM's streaming SST path equals the press's one-forward training path on the answer tokens."""
    model = tiny_model()
    x = speech(15.0)
    press = SummaryTokenPress(ratio=4, dim=model.llm.config.hidden_size, interval_tokens=100)
    torch.nn.init.normal_(press.embeddings, std=0.5)
    context = model.prefill(x, press)
    streamed = model.answer_logits(context, "When?", "Thursday")
    prefix, suffix = model.prompt_ids("When?")
    answer = model.tokenizer("Thursday", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        audio = model.project(model.encode(x)).embeddings
        batch = press.training_inputs(model.embed_ids(prefix), audio, torch.tensor([audio.shape[1]]),
                                      model.embed_ids(suffix + answer), None)
        full = model.llm(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
                         position_ids=batch["position_ids"]).logits[0]
    idx = torch.nonzero(batch["suffix_mask"][0]).flatten()
    trained = full[idx][len(suffix) - 1 : len(suffix) - 1 + len(answer)]
    assert torch.allclose(streamed, trained, atol=1e-4)


def test_sst_takes_a_tokens_per_second_target_from_the_recording_duration():
    """``sst@2.5`` needs the duration: 20 s at 25 tokens/s and 2.5 kept per second is alpha 10."""
    model = tiny_model()
    context = model.prefill(speech(20.0), "sst", tokens_per_second=2.5)
    assert context.cached_audio_tokens == sum(math.ceil(n / 10) for n in (256, 244))
    assert context.press == "sst:2.5tps(alpha 10)"  # the label says what the target became
    import pytest

    from speechpress.errors import PressError

    with pytest.raises(PressError, match="whole number"):  # a ratio SST cannot honour is refused, not rounded
        model.prefill(speech(20.0), "sst", ratio=2.5)


def test_audio_past_the_llm_positions_is_refused_before_any_forward_with_the_minutes_that_fit(monkeypatch):
    import pytest

    from speechpress.errors import ConfigError

    model = tiny_model()
    x = speech(20.0)  # 500 tokens; with sst:8 they take 500 + 63 positions (time-preserving), identity 500
    prefix = model.prefill(x, "avgpool:4").prefix_tokens
    monkeypatch.setattr(model.llm.config, "max_position_embeddings", prefix + 450)

    def refuse(*a, **kw):
        raise AssertionError("the LLM ran")

    monkeypatch.setattr(model.llm.model, "forward", refuse)
    with pytest.raises(ConfigError) as err:
        model.prefill(x, "sst", ratio=8)
    message = str(err.value)
    assert "563 positions" in message and "max_position_embeddings" in message and "min fit" in message
    with pytest.raises(ConfigError, match="500 positions"):
        model.prefill(x)

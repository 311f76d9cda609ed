import os
import stat

import numpy as np
import pytest
import torch

from speechpress.errors import DataError, ModelLoadError, PressError
from speechpress.model.lengths import audio_token_count
from speechpress.model.speechlm import SpeechLM

from helpers import speech, tiny_model


@pytest.mark.parametrize("seconds", [0.5, 12.0, 30.0, 61.3])
def test_encode_counts_and_spans(seconds):
    model = tiny_model()
    x = speech(seconds)
    with torch.no_grad():
        tokens = model.encode(x)
    n = int(tokens.lengths[0])
    assert n == audio_token_count(len(x), model.config)
    spans = tokens.spans[0, :n]
    assert spans[0, 0] == 0 and spans[-1, 1] == pytest.approx(len(x) / 16000, abs=1e-6)
    assert torch.all(spans[1:, 0] >= spans[:-1, 0]) and torch.all(spans[:, 1] > spans[:, 0])
    # 25 tokens per second of audio (50 Hz frames pooled by 2), one token per 40 ms
    assert n == pytest.approx(seconds * 25, abs=2)


def test_padding_of_last_window_never_becomes_tokens():
    model = tiny_model()
    x = speech(31.0)
    with torch.no_grad():
        tokens = model.encode(x)
    assert int(tokens.lengths[0]) == 750 + 25


@pytest.mark.parametrize("seconds", [0.5, 30.0, 31.27])
def test_stacked_pooling_concatenates_each_group_of_frames(seconds):
    """encoder_pool_mode="stack": token i is [frame 2i, frame 2i+1] of the encoder output (a short tail repeats its
    last frame), with the same count and spans as mean pooling; the projector reads twice the width."""
    import dataclasses

    from speechpress.model.config import TINY
    from speechpress.model.lengths import encoder_frames_for_mel_frames
    from speechpress.features import iter_feature_windows

    mean = SpeechLM.from_config(TINY, seed=0)
    stack = SpeechLM.from_config(dataclasses.replace(TINY, encoder_pool_mode="stack"), seed=0)
    assert stack.config.encoder_output_dim == 128 and stack.projector.in_features == 128
    x = speech(seconds)
    with torch.no_grad():
        a, b = mean.encode(x), stack.encode(x)
        window = next(iter(iter_feature_windows(x, 80, 30.0, 16000, 1)))[0]
        frames = stack.encoder(window.features[None]).last_hidden_state[0, : encoder_frames_for_mel_frames(window.valid_frames)]
    assert torch.equal(a.lengths, b.lengths) and torch.equal(a.spans, b.spans)
    n = frames.shape[0]
    assert torch.allclose(b.embeddings[0, 0], torch.cat([frames[0], frames[1]]), atol=1e-6)
    last = (n - 1) // 2 if n % 2 else n // 2 - 1
    tail = torch.cat([frames[2 * last], frames[min(2 * last + 1, n - 1)]])
    assert torch.allclose(b.embeddings[0, last], tail, atol=1e-6)
    assert torch.allclose(a.embeddings[0, 0], (frames[0] + frames[1]) / 2, atol=1e-6)


def test_compress_once_ask_many_equals_separate_prefills():
    model = tiny_model()
    x = speech(8.0)
    context = model.prefill(x, "avgpool", ratio=2)
    a1 = model.answer(context, "Where is the meeting?", max_new_tokens=6)
    a2 = model.answer(context, "Who presents the budget?", max_new_tokens=6)
    fresh = model.answer(model.prefill(x, "avgpool", ratio=2), "Who presents the budget?", max_new_tokens=6)
    assert a2.token_ids == fresh.token_ids
    assert context.cache.get_seq_length() == context.cached_tokens  # answers leave the cache as it was
    assert a1.llm_audio_tokens == 100 and a1.query_in_compression is False


def test_one_ask_resolves_its_press_chain_once(monkeypatch):
    """``ask`` -> ``prefill`` hands the resolved chain on: one build per ask, the same answers as before."""
    import speechpress.model.speechlm as speechlm

    model = tiny_model()
    x = speech(6.0)
    expected = [model.answer(model.prefill(x, "avgpool:2"), q, max_new_tokens=4).token_ids for q in ("Who?", "Where?")]
    calls = []
    real = speechlm.build_chain
    monkeypatch.setattr(speechlm, "build_chain", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    answers = model.ask(x, ["Who?", "Where?"], press="avgpool:2", max_new_tokens=4)
    assert calls == ["avgpool:2"] and [a.token_ids for a in answers] == expected
    other = SpeechLM.from_config(model.config, seed=1)  # a chain resolved for one model is resolved again for another
    other.prefill(x, model.press_chain("avgpool:2"))
    assert len(calls) == 3


def test_encode_once_then_prefill_several_presses():
    """A caller may encode once and try several presses: the same contexts as encoding each time."""
    model = tiny_model()
    x = speech(6.0)
    encoded = model.encode(x)
    for spec in ("identity", "avgpool:2", "random:3"):
        reused = model.answer_logits(model.prefill(x, spec, encoded=encoded), "Who?", "Maria")
        fresh = model.answer_logits(model.prefill(x, spec), "Who?", "Maria")
        assert torch.equal(reused, fresh)


def test_answer_logits_equal_full_forward():
    """The cached path (prefill, then suffix) equals one forward over the whole sequence."""
    model = tiny_model()
    x = speech(4.0)
    ctx = model.prefill(x)
    cached = model.answer_logits(ctx, "What day?", "Tuesday")
    prefix, suffix = model.prompt_ids("What day?")
    answer = model.tokenizer("Tuesday", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        audio = model.project(model.encode(x)).embeddings
        embeds = torch.cat([model.embed_ids(prefix), audio, model.embed_ids(suffix + answer)], dim=1)
        full = model.llm(inputs_embeds=embeds).logits[0]
    start = len(prefix) + audio.shape[1] + len(suffix) - 1
    assert torch.allclose(cached, full[start : start + len(answer)], atol=1e-4)


@pytest.mark.parametrize("press", [None, "knorm:4"])
def test_option_likelihoods_equal_one_forward_and_leave_the_context_as_it_was(press):
    """Each option's token log-probabilities (question once, options on top of it) equal those of one forward over
    the whole sequence; the context answers afterwards exactly as before, also when a KV press evicted."""
    model = tiny_model()
    x = speech(4.0)
    ctx = model.prefill(x, press)
    options = ["Tuesday", "the blue folder", "seventeen reports at four"]
    before = model.answer(ctx, "What day?", max_new_tokens=6).token_ids
    length = ctx.cache.get_seq_length()
    got = model.choice_logprobs(ctx, "What day?", options)
    assert ctx.cache.get_seq_length() == length
    assert model.answer(ctx, "What day?", max_new_tokens=6).token_ids == before
    for option, logprobs in zip(options, got):
        # The reference: teacher forcing the question and this option in one forward on the same context.
        ids = model.tokenizer(option, add_special_tokens=False)["input_ids"]
        reference = model.answer_logits(ctx, "What day?", option).log_softmax(-1)
        assert torch.allclose(logprobs, reference[torch.arange(len(ids)), ids], atol=1e-4)
    if press is None:  # and one forward over prefix, audio, question and option, with no cache at all
        prefix, suffix = model.prompt_ids("What day?")
        ids = model.tokenizer(options[2], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            audio = model.project(model.encode(x)).embeddings
            embeds = torch.cat([model.embed_ids(prefix), audio, model.embed_ids(suffix + ids)], dim=1)
            full = model.llm(inputs_embeds=embeds).logits[0].log_softmax(-1)
        start = len(prefix) + audio.shape[1] + len(suffix) - 1
        assert torch.allclose(got[2], full[torch.arange(start, start + len(ids)), ids], atol=1e-4)
    answer = model.choose(ctx, "What day?", options)
    sums = [float(lp.sum()) for lp in got]
    assert answer.extra["choice_logprobs"] == pytest.approx(sums, abs=1e-5)
    assert answer.text == "ABC"[int(np.argmax(sums))] and answer.token_ids == []


def test_options_without_tokens_are_a_data_error():
    model = tiny_model()
    ctx = model.prefill(speech(2.0))
    with pytest.raises(DataError, match="no tokens"):
        model.choice_logprobs(ctx, "What day?", ["Tuesday", ""])
    with pytest.raises(DataError, match="at least one"):
        model.choice_logprobs(ctx, "What day?", [])


def test_greedy_is_deterministic_and_sampling_is_seeded():
    model = tiny_model()
    ctx = model.prefill(speech(3.0))
    g1 = model.answer(ctx, "q", max_new_tokens=8)
    g2 = model.answer(ctx, "q", max_new_tokens=8)
    assert g1.token_ids == g2.token_ids
    s1 = model.answer(ctx, "q", max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.9, seed=3)
    s2 = model.answer(ctx, "q", max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.9, seed=3)
    s3 = model.answer(ctx, "q", max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.9, seed=4)
    assert s1.token_ids == s2.token_ids
    assert s1.token_ids != s3.token_ids  # another seed draws another sample
    assert s1.token_ids != g1.token_ids  # sampling at temperature 1.5 is not greedy


def test_save_load_round_trip_same_logits(tmp_path):
    model = tiny_model()
    x = speech(5.0)
    before = model.answer_logits(model.prefill(x), "Who?", "Maria")
    model.save_pretrained(tmp_path / "m")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "m").iterdir()}
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in (tmp_path / "m").iterdir())
    loaded = SpeechLM.from_pretrained(tmp_path / "m")
    after = loaded.answer_logits(loaded.prefill(x), "Who?", "Maria")
    assert torch.equal(before, after)


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_saved_models_and_results_get_the_umask_permissions(tmp_path, umask, file_mode, dir_mode):
    """The all-or-nothing writes build in private mkstemp/mkdtemp temporaries; what they leave must be what a plain
    write under the umask gives (a model saved on a shared machine is meant to be read by others)."""
    from speechpress.cli import main
    from speechpress.io import atomic_write_json

    old = os.umask(umask)
    try:
        tiny_model().save_pretrained(tmp_path / "m")
        atomic_write_json(tmp_path / "r" / "metrics.json", {"wer": 0.4})
        assert main(["init-model", "--out", str(tmp_path / "init")]) == 0
    finally:
        os.umask(old)
    for folder in (tmp_path / "m", tmp_path / "init"):
        assert stat.S_IMODE(folder.stat().st_mode) == dir_mode, folder
        for f in folder.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == file_mode, f
    assert stat.S_IMODE((tmp_path / "r" / "metrics.json").stat().st_mode) == file_mode


def test_fp16_storage_halves_the_file_and_loads_the_rounded_weights(tmp_path):
    import copy

    model = tiny_model()
    model.save_pretrained(tmp_path / "fp32")
    model.save_pretrained(tmp_path / "fp16", dtype="fp16")
    size32, size16 = ((tmp_path / d / "model.safetensors").stat().st_size for d in ("fp32", "fp16"))
    assert 0.45 < size16 / size32 < 0.55
    rounded = copy.deepcopy(model)
    for p in rounded.parameters():
        p.data = p.data.half().float()
    loaded = SpeechLM.from_pretrained(tmp_path / "fp16")
    assert loaded.dtype == torch.float32
    x = speech(5.0)
    expected = rounded.answer_logits(rounded.prefill(x), "Who?", "Maria")
    assert torch.equal(loaded.answer_logits(loaded.prefill(x), "Who?", "Maria"), expected)
    assert not torch.equal(model.answer_logits(model.prefill(x), "Who?", "Maria"), expected)  # rounding is real


def test_model_dir_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model directory"):
        SpeechLM.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a speechpress model"):
        SpeechLM.from_pretrained(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "qwen2"}')
    with pytest.raises(ModelLoadError, match="neither a speechpress model nor a supported transformers checkpoint"):
        SpeechLM.from_pretrained(bad)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not be fetched"):
        SpeechLM.from_pretrained("nobody-here/no-such-model")


def test_press_errors():
    model = tiny_model()
    with pytest.raises(PressError, match="unknown press 'nope'"):
        model.press_chain("nope")
    with pytest.raises(PressError, match=">= 1"):
        model.press_chain("avgpool", ratio=0.5)


@pytest.mark.parametrize("name", ["bad/nonexist", "~/models/tiny", "models\\tiny", "my models/tiny", "runs/x/"])
def test_a_mistyped_local_path_is_not_sent_to_the_hub(name, tmp_path, monkeypatch):
    import huggingface_hub

    def refuse(*a, **kw):
        raise AssertionError("sent to the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad").mkdir()  # the first component exists here: a typo in a local path, not a hub id
    with pytest.raises(ModelLoadError, match="no such model directory"):
        SpeechLM.from_pretrained(name)


def test_a_hub_failure_is_one_line(monkeypatch):
    import huggingface_hub

    def fail(*a, **kw):
        raise OSError("Got: ConnectError\nAn error happened while trying to locate the files on the Hub.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(ModelLoadError, match="could not be fetched") as info:
        SpeechLM.from_pretrained("nobody-here/no-such-model")
    assert "\n" not in str(info.value)


def test_a_prompt_beyond_the_llm_positions_is_refused_before_any_forward(monkeypatch):
    from speechpress.errors import ConfigError

    model = tiny_model()
    context = model.prefill(speech(4.0))
    ok = model.answer(context, "Who?", max_new_tokens=3)
    _, suffix = model.prompt_ids("Who?")
    limit = context.next_position + len(suffix) + 3
    monkeypatch.setattr(model.llm.config, "max_position_embeddings", limit)
    assert model.answer(context, "Who?", max_new_tokens=3).token_ids == ok.token_ids  # exactly at the limit: unchanged

    def refuse(*a, **kw):
        raise AssertionError("the LLM ran")

    monkeypatch.setattr(model, "_forward_ids", refuse)
    with pytest.raises(ConfigError) as err:
        model.answer(context, "Who?" + "x" * 50, max_new_tokens=3)
    message = str(err.value)
    assert f"{limit + 50} tokens" in message and f"at most {limit}" in message and "max_position_embeddings" in message
    with pytest.raises(ConfigError, match=f"{limit + 1} tokens"):
        model.answer(context, "Who?", max_new_tokens=4)


def test_a_long_question_runs_in_pieces_with_the_same_answer(monkeypatch):
    """The text after the audio is fed in pieces through the cache (attention memory piece x cache, not question
    squared); the logits match one forward to float precision, and the answer is the same."""
    model = tiny_model()
    context = model.prefill(speech(3.0))
    question = "Which of the speakers mentioned the budget for the project and when? " * 8
    whole = model.answer(context, question, max_new_tokens=6)
    calls = []
    original = model.llm.forward

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(model.llm, "forward", counting)
    monkeypatch.setattr(model, "text_chunk_tokens", 100)
    pieces = model.answer(context, question, max_new_tokens=6)
    _, suffix = model.prompt_ids(question)
    expected = [100] * (len(suffix) // 100) + ([len(suffix) % 100] if len(suffix) % 100 else [])
    assert len(suffix) > 500 and calls[: len(expected)] == expected
    assert pieces.token_ids == whole.token_ids
    monkeypatch.setattr(model, "text_chunk_tokens", 4096)
    a = model._forward_ids(context, suffix, context.next_position)
    from speechpress import kv_cache

    kv_cache.truncate(context.cache, context.cached_tokens)
    monkeypatch.setattr(model, "text_chunk_tokens", 64)
    b = model._forward_ids(context, suffix, context.next_position)
    kv_cache.truncate(context.cache, context.cached_tokens)
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_a_long_prefill_runs_in_chunks_with_the_same_cache_and_answer(monkeypatch):
    """Prefill feeds [prefix + audio] through the LLM in chunks (activations of a chunk, not of an hour of tokens);
    the cache, the answer's logits and the answer equal one forward over the whole sequence."""
    from speechpress import kv_cache

    model = tiny_model()
    x = speech(12.0)  # 300 audio tokens
    one = model.prefill(x)  # under the largest chunk: one forward
    calls = []
    original = model.llm.model.forward

    def counting(*args, **kwargs):
        calls.append(kwargs["inputs_embeds"].shape[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(model.llm.model, "forward", counting)
    monkeypatch.setattr(kv_cache, "PREFILL_CHUNK_TOKENS", (16, 64))
    monkeypatch.setattr(kv_cache, "PREFILL_ONE_FORWARD_TOKENS", 64)
    monkeypatch.setattr(kv_cache, "PREFILL_MASK_ELEMENTS", 64 * 160)  # chunks shrink as the cache grows
    chunked = model.prefill(x)
    n = one.cached_tokens
    assert calls == kv_cache.prefill_chunks(n) and sum(calls) == n and len(set(calls)) > 2
    assert chunked.next_position == one.next_position and chunked.cached_tokens == n
    kv_cache.check_evictable(chunked.cache)  # plain layers again, each its one buffer, that decoding appends to
    assert all("update" not in vars(layer) and layer.keys.is_contiguous() for layer in chunked.cache.layers)
    for a, b in zip(one.cache.layers, chunked.cache.layers):
        assert torch.allclose(a.keys, b.keys, atol=1e-5) and torch.allclose(a.values, b.values, atol=1e-5)
    monkeypatch.setattr(model.llm.model, "forward", original)
    question, reply = "Where is the meeting?", "On Tuesday at four."
    assert torch.allclose(model.answer_logits(one, question, reply), model.answer_logits(chunked, question, reply), atol=1e-4)
    assert model.answer(one, question, max_new_tokens=8).token_ids == model.answer(chunked, question, max_new_tokens=8).token_ids


def test_prefill_chunks_cover_the_tokens_and_bound_the_mask(monkeypatch):
    from speechpress import kv_cache

    low, high = kv_cache.PREFILL_CHUNK_TOKENS
    one = kv_cache.PREFILL_ONE_FORWARD_TOKENS
    assert kv_cache.prefill_chunks(one) == [one] and kv_cache.prefill_chunks(0) == []  # up to it: one forward
    for n in (one + 1, 60_000):
        sizes = kv_cache.prefill_chunks(n)
        assert sum(sizes) == n and all(low <= s <= high for s in sizes[:-1])
        seen = 0
        for s in sizes:
            seen += s
            assert s * seen <= kv_cache.PREFILL_MASK_ELEMENTS or s <= low

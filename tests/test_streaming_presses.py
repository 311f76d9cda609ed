"""Uniform presses run while a recording is encoded: exactly the tokens and spans of the press on the whole
encoding, the same prefill, and audio that cannot fit the LLM refused before it is encoded."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch

from speechpress.errors import ConfigError
from speechpress.presses.streaming import streaming_prefix

from helpers import speech, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model().eval()


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """73.3 s: three windows, the last one partial, and token counts that no k here divides."""
    path = tmp_path_factory.mktemp("audio") / "long.flac"
    sf.write(str(path), speech(73.3, seed=4), 16000)
    return path


@pytest.mark.parametrize("spec", ["avgpool:4", "downsample:7", "avgpool:2+downsample:4", "avgpool:7+speechprune:2"])
def test_streamed_presses_give_the_tokens_of_the_press_on_the_whole_encoding(model, recording, spec):
    chain = model.press_chain(spec)
    prefix = streaming_prefix(chain)
    assert [p.name for p in prefix] == [p.name for p in chain if p.name in ("avgpool", "downsample")]
    streamed, tokens_in = model.encode_pressed(str(recording), prefix, batch_windows=1)
    whole = model.encode(str(recording))
    assert tokens_in == int(whole.lengths[0]) == 1833  # 750 a window: groups of 4 and 7 cross every window edge
    for press in prefix:
        whole = press(whole)
    assert torch.equal(streamed.embeddings, whole.embeddings)
    assert torch.equal(streamed.spans, whole.spans) and torch.equal(streamed.lengths, whole.lengths)
    assert streamed.duration == pytest.approx(73.3, abs=1e-3)


def test_only_uniform_presses_at_whole_ratios_stream(model):
    names = {spec: [p.name for p in streaming_prefix(model.press_chain(spec))] for spec in (
        "identity", "avgpool:2.5", "avgpool@3", "segment:4", "random:4", "avgpool:2+segment:2", "speechprune:4")}
    assert names == {"identity": [], "avgpool:2.5": [], "avgpool@3": [], "segment:4": [], "random:4": [],
                     "avgpool:2+segment:2": ["avgpool"], "speechprune:4": []}


def test_a_streamed_prefill_equals_one_from_the_whole_encoding(model, recording):
    question = "What is said?"
    chain = model.press_chain("avgpool:4+sst:2")  # one chain: an untrained SST press is drawn anew per build
    streamed = model.prefill(str(recording), chain)
    whole = model.prefill(str(recording), chain, encoded=model.encode(str(recording)))
    assert (streamed.encoder_tokens, streamed.llm_audio_tokens, streamed.cached_audio_tokens) == (
        whole.encoder_tokens, whole.llm_audio_tokens, whole.cached_audio_tokens)
    assert torch.equal(model.answer_logits(streamed, question, "yes"), model.answer_logits(whole, question, "yes"))


def test_audio_that_cannot_fit_is_refused_before_it_is_encoded(model, recording, monkeypatch):
    monkeypatch.setattr(model.llm.config, "max_position_embeddings", 900)

    def never(*args, **kwargs):
        raise AssertionError("encoded before the length check")

    monkeypatch.setattr(model, "encode_pressed", never)
    with pytest.raises(ConfigError, match="about 1.0 min fit"):
        model.prefill(str(recording), "avgpool:2")  # 1,833 tokens -> 917 + a 72-token prefix > 900
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        model.prefill(speech(50.0), "identity")


@pytest.mark.parametrize("spec,pooled", [("avgpool:4+speechprune:2", 459), ("avgpool:2", 917)])
def test_the_projector_runs_as_the_audio_streams_with_the_same_kept_tokens(model, recording, spec, pooled, monkeypatch):
    """With no encoder-space press left after the streamed ones, the projector runs on each streamed group (it acts
    on each token alone), so the presses' output is never held beside its own: the same tokens and spans kept,
    the same cache and logits as projecting the whole encoding."""
    question = "What is said?"
    chain = model.press_chain(spec)
    projected = []
    original = model.project
    monkeypatch.setattr(model, "project", lambda tokens: projected.append(tokens.embeddings.shape[1]) or original(tokens))
    streamed = model.prefill(str(recording), chain, question=question)
    assert projected == []  # the streamed path never projects a whole row
    whole = model.prefill(str(recording), chain, question=question, encoded=model.encode(str(recording)))
    assert projected == [pooled]
    assert torch.equal(streamed.spans, whole.spans) and streamed.llm_audio_tokens == whole.llm_audio_tokens
    for a, b in zip(streamed.cache.layers, whole.cache.layers):
        assert torch.allclose(a.keys, b.keys, atol=1e-5) and torch.allclose(a.values, b.values, atol=1e-5)
    assert torch.allclose(model.answer_logits(streamed, question, "yes"), model.answer_logits(whole, question, "yes"), atol=1e-5)

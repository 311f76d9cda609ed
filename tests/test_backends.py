"""transformers backends: Qwen2-Audio and the Qwen2.5-Omni thinker through SpeechLM.

Parity is against each transformers model's own forward on what its processor builds (WhisperFeatureExtractor
per 30 s segment, placeholders expanded to the processor's count): with no compression the logits must agree.
"""

from __future__ import annotations

import json

import pytest
import torch

from backend_helpers import reference_inputs
from helpers import speech
from speechpress.errors import AudioError, ModelLoadError
from speechpress.model.backends.tiny import build_tiny_omni, build_tiny_qwen2_audio
from speechpress.model.lengths import audio_token_count, chain_token_counts
from speechpress.model.speechlm import SpeechLM
from speechpress.presses import available_presses

QUESTION, ANSWER = "What did the speaker say about the meeting?", "It moved to Tuesday."


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("backends")
    return {
        "qwen2_audio": (root / "qwen2-audio", build_tiny_qwen2_audio(root / "qwen2-audio")),
        "qwen2_5_omni": (root / "omni-thinker", build_tiny_omni(root / "omni-thinker")),
    }


@pytest.fixture(scope="module")
def models(checkpoints):
    return {name: SpeechLM.from_pretrained(path) for name, (path, _) in checkpoints.items()}


def reference_logits(model, hf_model, samples, explicit_positions=False):
    prefix, suffix = model.prompt_ids(QUESTION)
    answer = model.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    audio_id = model.tokenizer.convert_tokens_to_ids(model.config.audio_token)
    ids, feats, feat_mask, n_audio = reference_inputs(samples, prefix, suffix + answer, audio_id)
    extra = {"position_ids": torch.arange(ids.shape[1])[None]} if explicit_positions else {}
    with torch.no_grad():
        logits = hf_model(input_ids=ids, input_features=feats, feature_attention_mask=feat_mask, **extra).logits[0]
    return logits[-len(answer) - 1 : -1], n_audio


@pytest.mark.parametrize("backend", ["qwen2_audio", "qwen2_5_omni"])
@pytest.mark.parametrize("seconds", [7.3, 30.0])
def test_parity_single_window(checkpoints, models, backend, seconds):
    model, (_, hf_model) = models[backend], checkpoints[backend]
    x = speech(seconds)
    context = model.prefill(x)
    ours = model.answer_logits(context, QUESTION, ANSWER)
    # Omni: no explicit positions, so transformers' own multimodal RoPE index is what we are compared with.
    ref, n_audio = reference_logits(model, hf_model, x)
    assert context.llm_audio_tokens == n_audio == audio_token_count(len(x), model.config)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("backend", ["qwen2_audio", "qwen2_5_omni"])
def test_parity_several_windows_as_consecutive_segments(checkpoints, models, backend):
    """65 s = 30 + 30 + 5 s: the transformers model fed the same three segments back to back."""
    model, (_, hf_model) = models[backend], checkpoints[backend]
    x = speech(65.0)
    context = model.prefill(x)
    ours = model.answer_logits(context, QUESTION, ANSWER)
    # Omni's RoPE index assumes one audio per <|audio_bos|>; three segments in one block need plain positions,
    # which is what its index gives a single audio (checked above).
    ref, n_audio = reference_logits(model, hf_model, x, explicit_positions=backend == "qwen2_5_omni")
    assert context.llm_audio_tokens == n_audio == 1625
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("backend", ["qwen2_audio", "qwen2_5_omni"])
def test_spans_follow_drop_pooling(models, backend):
    """AvgPool1d drops an odd last frame: 10.01 s -> 1001 mel frames -> 501 frames -> 250 tokens."""
    model = models[backend]
    tokens = model.encode(speech(10.01))
    assert tokens.lengths.tolist() == [250]
    spans = tokens.spans[0]
    assert spans[0].tolist() == [0.0, 0.04]
    assert torch.all(spans[1:, 0] >= spans[:-1, 0]) and float(spans[-1, 1]) == pytest.approx(10.0)


def test_too_short_for_any_token(models):
    with pytest.raises(AudioError, match="too short"):
        models["qwen2_audio"].encode(speech(0.015))


PRESSES = sorted(n for n, c in available_presses().items() if not c.unavailable())  # kvpress: tests/test_kv_presses.py


@pytest.mark.parametrize("backend", ["qwen2_audio", "qwen2_5_omni"])
@pytest.mark.parametrize("press", PRESSES)
def test_every_press_on_every_backend(models, backend, press):
    """45 s (two windows) through each press at 4x: the token count is the one lengths.py promises, the cache
    holds what the press says, and an answer comes back with the context left as it was."""
    model = models[backend]
    x = speech(45.0)
    ratio = None if press == "identity" else 4
    chain = model.press_chain(press, ratio)
    n_in = audio_token_count(len(x), model.config)
    expected = chain_token_counts(n_in, len(x) / 16000, chain)[-1]
    question = QUESTION if chain[0].query_aware else None
    context = model.prefill(x, press, ratio, question=question)
    assert context.encoder_tokens == n_in == 1125
    kv = chain[-1].space == "kv"
    assert context.llm_audio_tokens == (n_in if kv else expected)
    if kv:
        assert context.cached_audio_tokens == expected  # only the kept entries' KV survives (SST: the summaries)
    length = context.cache.get_seq_length()
    answer = model.answer(context, QUESTION, max_new_tokens=3)
    assert len(answer.token_ids) <= 3
    assert context.cache.get_seq_length() == length


def test_qwen2_audio_uses_the_published_chat_template(models):
    prefix, suffix = models["qwen2_audio"].prompt_ids("Q?")
    text = models["qwen2_audio"].tokenizer.decode(prefix + suffix)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nAudio 1: <|audio_bos|>"
        "<|audio_eos|>\nQ?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_stop_tokens_include_im_end(models):
    tok = models["qwen2_audio"].tokenizer
    assert tok.convert_tokens_to_ids("<|im_end|>") in models["qwen2_audio"].stop_token_ids


@pytest.mark.parametrize("backend", ["qwen2_audio", "qwen2_5_omni"])
def test_save_keeps_checkpoint_and_trained_presses(models, backend, tmp_path):
    """A backend model saves as a transformers checkpoint (loadable by transformers itself) plus its presses."""
    model = models[backend]
    model.config.presses = {"qformer": {"ratio": 4}}
    model.presses["qformer"] = model._new_press("qformer", ratio=4)
    try:
        x = speech(12.0)
        before = model.answer_logits(model.prefill(x, "qformer"), QUESTION, ANSWER)
        model.save_pretrained(tmp_path / "saved")
        loaded = SpeechLM.from_pretrained(tmp_path / "saved")
        after = loaded.answer_logits(loaded.prefill(x, "qformer"), QUESTION, ANSWER)
    finally:
        model.config.presses = {}
        del model.presses["qformer"]
    torch.testing.assert_close(before, after, atol=0, rtol=0)
    assert json.loads((tmp_path / "saved" / "speechpress_presses.json").read_text()) == {"qformer": {"ratio": 4}}
    assert "speechpress_version" not in json.loads((tmp_path / "saved" / "config.json").read_text())


def test_full_omni_checkpoint_loads_the_thinker(tmp_path):
    hf_model = build_tiny_omni(tmp_path / "omni", full=True)
    model = SpeechLM.from_pretrained(tmp_path / "omni")
    assert model.llm.lm_head is not hf_model.thinker.lm_head  # loaded anew from disk ...
    torch.testing.assert_close(model.llm.lm_head.weight, hf_model.thinker.lm_head.weight)  # ... with the same weights
    x = speech(8.0)
    ref, _ = reference_logits(model, hf_model.thinker, x)
    torch.testing.assert_close(model.answer_logits(model.prefill(x), QUESTION, ANSWER), ref, atol=1e-4, rtol=0)


def test_unsupported_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError, match="model_type 'llama'.*supported: qwen2_5_omni"):
        SpeechLM.from_pretrained(tmp_path)


def test_feature_extractor_mismatch_is_refused(checkpoints, tmp_path):
    import shutil

    src, _ = checkpoints["qwen2_audio"]
    shutil.copytree(src, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "preprocessor_config.json").read_text())
    cfg["hop_length"] = 320
    (tmp_path / "m" / "preprocessor_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="hop_length"):
        SpeechLM.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize("backend", ["qwen2_audio", "qwen2_5_omni"])
def test_cli_init_model_backend_then_ask(backend, tmp_path, capsys):
    import soundfile as sf

    from speechpress.cli import main

    sf.write(tmp_path / "talk.flac", speech(40.0), 16000)
    assert main(["init-model", "--backend", backend, "--out", str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"].startswith(backend)
    capsys.readouterr()
    argv = ["ask", str(tmp_path / "talk.flac"), "Who?", "When?", "--model", str(tmp_path / "m"), "--press", "avgpool:4",
            "--max-new-tokens", "2", "--json"]
    assert main(argv) == 0
    answers = json.loads(capsys.readouterr().out)["answers"]
    assert [a["llm_audio_tokens"] for a in answers] == [250, 250]  # 40 s -> 1000 tokens -> /4


@pytest.mark.parametrize("backend", ["qwen2_audio", "qwen2_5_omni"])
def test_device_map_auto_and_an_attention_kernel_load_the_same_model(checkpoints, models, backend):
    """``device="auto"`` goes to transformers' device_map (no ``.to("auto")`` afterwards) and
    ``attn_implementation`` reaches the checkpoint's attention: eager gives the sdpa logits."""
    path, _ = checkpoints[backend]
    x = speech(6.0)
    reference = models[backend].answer_logits(models[backend].prefill(x), QUESTION, ANSWER)
    auto = SpeechLM.from_pretrained(path, device="auto", attn_implementation="eager")
    assert auto.llm.config._attn_implementation == "eager"
    torch.testing.assert_close(auto.answer_logits(auto.prefill(x), QUESTION, ANSWER), reference, atol=1e-4, rtol=0)
    with pytest.raises(ModelLoadError, match="attn"):
        SpeechLM.from_pretrained(path, attn_implementation="no_such_kernel")


def test_a_speechpress_model_takes_device_auto_and_an_attention_kernel(tmp_path):
    from helpers import tiny_model

    tiny_model().save_pretrained(tmp_path / "m")
    model = SpeechLM.from_pretrained(tmp_path / "m", device="auto", attn_implementation="eager")
    assert model.llm.config._attn_implementation == "eager" and model.device.type in ("cpu", "cuda")
    x = speech(4.0)
    torch.testing.assert_close(model.answer_logits(model.prefill(x), "Who?", "Maria"),
                               tiny_model().answer_logits(tiny_model().prefill(x), "Who?", "Maria"), atol=1e-4, rtol=0)
    with pytest.raises(ModelLoadError, match="attn_implementation"):
        SpeechLM.from_pretrained(tmp_path / "m", attn_implementation="no_such_kernel")

"""The optional int8 encoder (``SpeechLM.quantize_encoder_int8``, ``--int8-encoder``): close to the fp32 encoder
but not equal to it, its own encoder-cache fingerprint, refused off CPU, and an eval run of its own."""

import pytest
import torch

from speechpress.encoder_cache import encoder_fingerprint
from speechpress.model.config import TINY
from speechpress.model.speechlm import SpeechLM

from helpers import needs_packaged_bases

# encoder_fingerprint of fp32 encoders as it was before the int8 encoder existed: caches already on disk are
# keyed by these, so they must never change.
PINNED = {"seeded": "b998dc968a0fbf85", "seeded-fp16": "de2c25d31bb1157e", "bundled": "bc8721f69217662e"}  # bundled: speechpress-tiny


def test_the_fp32_fingerprint_is_the_one_existing_caches_were_written_under():
    assert encoder_fingerprint(SpeechLM.from_config(TINY, seed=0)) == PINNED["seeded"]
    half = SpeechLM.from_config(TINY, seed=0)
    half.encoder.to(torch.float16)
    assert encoder_fingerprint(half) == PINNED["seeded-fp16"]
    # Weights read from disk: independent of how torch or transformers initialise a seeded model.
    assert encoder_fingerprint(SpeechLM.from_pretrained("speechpress-tiny", device="cpu")) == PINNED["bundled"]


def _quiet_int8(model, **kwargs):
    """quantize_encoder_int8, failing on any warning it lets through (torch's migration notices included)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert model.quantize_encoder_int8(**kwargs) is model
    assert not caught, [str(w.message)[:120] for w in caught]
    return model


def test_the_int8_encoder_is_close_to_fp32_but_not_equal_and_quantizes_only_the_encoder_linears():
    from speechpress.model.speechlm import SpeechLM

    from helpers import speech

    audio = speech(8.0)
    model = SpeechLM.from_config(TINY, seed=0)
    fp32 = model.encode(audio)
    projector = {k: v.clone() for k, v in model.projector.state_dict().items()}
    assert model.encoder_int8 is False
    _quiet_int8(model)
    assert model.encoder_int8 is True
    fp32_linears = {n for n, m in model.encoder.named_modules() if type(m) is torch.nn.Linear}
    assert fp32_linears and all(n.endswith(".fc2") for n in fp32_linears)  # fc2 stays fp32 (its input outliers)
    assert any(n.endswith(".fc1") for n, m in model.encoder.named_modules() if type(m) is not torch.nn.Linear
               and isinstance(m, torch.nn.Module) and hasattr(m, "_packed_params"))
    assert isinstance(model.encoder.conv1, torch.nn.Conv1d) and model.encoder.conv1.weight.dtype == torch.float32
    assert all(torch.equal(v, projector[k]) for k, v in model.projector.state_dict().items())
    int8 = model.encode(audio)
    assert int8.embeddings.shape == fp32.embeddings.shape and torch.equal(int8.spans, fp32.spans)
    cos = torch.nn.functional.cosine_similarity(int8.embeddings[0], fp32.embeddings[0], dim=-1)
    assert cos.min() > 0.99, cos.min()
    assert not torch.equal(int8.embeddings, fp32.embeddings)
    # A second call changes nothing, and the model still answers.
    assert _quiet_int8(model).encode(audio).embeddings.equal(int8.embeddings)
    assert model.ask(audio, "What is said?", max_new_tokens=2)[0].encoder_tokens == fp32.embeddings.shape[1]


def test_the_int8_fingerprint_differs_from_fp32_is_stable_and_follows_the_weights():
    fp32 = encoder_fingerprint(SpeechLM.from_config(TINY, seed=0))
    first = encoder_fingerprint(_quiet_int8(SpeechLM.from_config(TINY, seed=0)))
    again = encoder_fingerprint(_quiet_int8(SpeechLM.from_config(TINY, seed=0)))
    assert first == again != fp32
    assert encoder_fingerprint(_quiet_int8(SpeechLM.from_config(TINY, seed=1))) != first
    # One int8 weight moved by one step is another encoder.
    model = _quiet_int8(SpeechLM.from_config(TINY, seed=0))
    fc1 = model.encoder.layers[0].fc1
    weight, bias = fc1._weight_bias()
    ints = weight.int_repr().clone()
    ints[0, 0] += 1 if ints[0, 0] < 127 else -1
    fc1.set_weight_bias(torch._make_per_tensor_quantized_tensor(ints, weight.q_scale(), weight.q_zero_point()), bias)
    assert encoder_fingerprint(model) not in (first, fp32)
    # The frozen fp32 value does not move either.
    assert fp32 == PINNED["seeded"]


def test_the_int8_encoder_is_refused_off_the_cpu_or_from_half_weights_and_cannot_be_saved(tmp_path):
    from speechpress.errors import ConfigError

    model = SpeechLM.from_config(TINY, seed=0)
    model.encoder.to("meta")  # a device other than the CPU, without a GPU
    with pytest.raises(ConfigError, match="CPU only.*meta"):
        model.quantize_encoder_int8()
    assert model.encoder_int8 is False
    half = SpeechLM.from_config(TINY, seed=0)
    half.encoder.to(torch.float16)
    with pytest.raises(ConfigError, match="fp32.*float16"):
        half.quantize_encoder_int8()
    assert any(isinstance(m, torch.nn.Linear) for m in half.encoder.modules())
    int8 = _quiet_int8(SpeechLM.from_config(TINY, seed=0))
    with pytest.raises(ConfigError, match="int8"):
        int8.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()


@pytest.mark.parametrize("backend", ["qwen2_audio", "qwen2_5_omni"])
def test_the_backends_quantize_their_tower_and_refuse_to_save_it(tmp_path, backend):
    from speechpress.errors import ConfigError
    from speechpress.model.backends.tiny import TINY_BUILDERS

    from helpers import speech

    TINY_BUILDERS[backend](tmp_path / "ckpt")
    model = SpeechLM.from_pretrained(tmp_path / "ckpt", device="cpu")
    audio = speech(6.0)
    fp32 = model.encode(audio).embeddings[0]
    fp32_print = encoder_fingerprint(model)
    _quiet_int8(model)
    int8 = model.encode(audio).embeddings[0]
    assert torch.nn.functional.cosine_similarity(int8, fp32, dim=-1).min() > 0.99
    assert not torch.equal(int8, fp32)
    assert encoder_fingerprint(model) != fp32_print
    assert model.ask(audio, "What is said?", max_new_tokens=2)[0].encoder_tokens == fp32.shape[0]
    with pytest.raises(ConfigError, match="int8"):
        model.save_pretrained(tmp_path / "saved")


# ----------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    import soundfile as sf

    from helpers import speech

    path = tmp_path_factory.mktemp("audio") / "talk.flac"
    sf.write(path, speech(10.0), 16000)
    return path


def test_ask_with_int8_encoder_answers_on_cpu_without_warnings(wav, capsys):
    import warnings

    from speechpress.cli import main

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["ask", str(wav), "What is said?", "--int8-encoder", "--device", "cpu", "--max-new-tokens", "2"]) == 0
    assert not [w for w in caught if "quantiz" in str(w.message)], [str(w.message)[:120] for w in caught]
    assert "audio tokens" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["ask", "transcribe", "eval", "demo"])
def test_int8_encoder_on_a_gpu_device_is_one_error_line_before_anything_runs(tmp_path, wav, corpus, model_dir, capsys, command):
    from speechpress.cli import main

    argv = {
        "ask": ["ask", str(wav), "What is said?"],
        "transcribe": ["transcribe", str(wav)],
        "eval": ["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--out", str(tmp_path / "runs")],
        "demo": ["demo", "--keep", str(tmp_path / "demo")],
    }[command]
    assert main([*argv, "--int8-encoder", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --int8-encoder runs on CPU only") and err.count("\n") == 1, err
    assert "--device cpu" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "demo").exists()


def test_eval_int8_encoder_runs_in_a_folder_of_its_own_and_says_so(tmp_path, corpus, model_dir, capsys):
    import json

    from speechpress.cli import main

    out = tmp_path / "runs"
    gen = ["--max-new-tokens", "3", "--no-progress", "--count-flops", "first", "--limit", "3", "--out", str(out)]
    base = ["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--press", "identity", "avgpool:2", *gen]
    assert main(base) == 0
    assert main([*base, "--int8-encoder"]) == 0
    capsys.readouterr()
    bench = next(out.glob("*/tiny")).parent
    assert sorted(p.name for p in bench.iterdir()) == ["tiny", "tiny+int8-encoder"]
    for label, int8 in (("tiny", False), ("tiny+int8-encoder", True)):
        for run in ("identity", "avgpool-x2"):
            folder = bench / label / run
            assert json.loads((folder / "config.json").read_text())["int8_encoder"] is int8
            metrics = json.loads((folder / "metrics.json").read_text())
            assert metrics["model"] == label and metrics["rows"] == 3
    # Two encoders, two encoder-cache folders: int8 frames never stand in for fp32 ones.
    assert len(list((out / "encoder-cache").iterdir())) == 2
    # A rerun of each is skipped, also for a run written before config.json had int8_encoder.
    config = bench / "tiny" / "identity" / "config.json"
    old = json.loads(config.read_text())
    del old["int8_encoder"]
    config.write_text(json.dumps(old))
    assert main(base) == 0 and main([*base, "--int8-encoder"]) == 0
    assert capsys.readouterr().out.count("finished earlier (skipped)") == 4
    # The report lists them as two models, side by side.
    assert main(["report", str(out)]) == 0
    table = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ") and "`" in line]
    assert [line.split(" | ")[1] for line in table] == ["tiny", "tiny", "tiny+int8-encoder", "tiny+int8-encoder"]


@needs_packaged_bases
def test_keeping_fc2_in_fp32_is_what_keeps_the_real_whisper_base_encoder_close():
    """Why ``keep_fp32=("fc2",)``: on the pretrained Whisper-base encoder and real speech, quantizing every linear
    layer moves the pooled output by about a third (fc2's GELU inputs carry outliers); without fc2 it moves far
    less. Random tiny weights have no such outliers, so only the real weights can show it."""
    import copy

    from helpers import speech

    model = SpeechLM.compose("whisper-base", "smollm2-135m-instruct", seed=0)
    audio = speech(6.0)
    with torch.inference_mode():
        ref = model.encode(audio).embeddings[0]
        errors = {}
        for label, keep in (("every linear", ()), ("fc2 kept", ("fc2",))):
            q = copy.deepcopy(model)
            _quiet_int8(q, keep_fp32=keep)
            out = q.encode(audio).embeddings[0]
            errors[label] = float((out - ref).norm() / ref.norm())
    assert errors["every linear"] > 0.2 and errors["fc2 kept"] < 0.15, errors
    assert errors["fc2 kept"] < errors["every linear"] / 2, errors


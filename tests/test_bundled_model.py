"""The bundled models: speechpress-smol (the default: Whisper-base + SmolLM2-135M-Instruct, trained parts only) and
speechpress-tiny (7 M parameters, from scratch); shipped in the package, small, trained (they hear), and what
`speechpress demo` runs."""

from __future__ import annotations

import json

import jiwer
import pytest
from safetensors import safe_open

from speechpress.cli import main
from speechpress.cli.commands.demo import BUNDLED, default_presses
from speechpress.model.speechlm import SpeechLM

from helpers import needs_packaged_bases

# On the six unseen utterances below (torch 2.13 CPU), greedy.
SMOL_WER_LIMIT = 0.5  # WER measured 0.24; the same bases with the untrained projector: 1.97
TINY_CER_LIMIT = 0.5  # CER measured 0.22; random weights of this shape: 3.28



@pytest.fixture(scope="module")
def unseen_utterances(tmp_path_factory):
    """Six utterances of a seed never used in training, with their 90 s recording."""
    from speechpress.data.synth import synthesize

    out = tmp_path_factory.mktemp("unseen")
    report = synthesize(out, seed=777, split="test", durations=[90], tasks=["asr_short"])
    rows = [json.loads(line) for line in report.manifest.read_text().splitlines()][:6]
    assert len(rows) >= 3
    return out, rows


def transcribe_rows(model, folder, rows, max_new_tokens: int) -> tuple[list[str], list[str]]:
    audio = model.as_audio(str(folder / rows[0]["audio"]))
    refs, hyps = [], []
    for r in rows:
        start = int(r["offset"] * audio.sample_rate)
        clip = audio.samples[start : start + int(r["duration"] * audio.sample_rate)]
        context = model.prefill(clip, model.press_chain("identity"))
        hyps.append(model.answer(context, r["prompt"], max_new_tokens=max_new_tokens).text.strip().lower().rstrip("."))
        refs.append(r["answer"].lower().rstrip("."))
    return refs, hyps


def _stored(directory):
    total = sum(f.stat().st_size for f in directory.iterdir())
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
        keys = list(f.keys())
    return total, dtypes, keys


@needs_packaged_bases
def test_the_default_is_speechpress_smol_stored_as_its_trained_parts():
    """Projector, SST embeddings and the low-rank factors of its merged LoRA adapters in fp16; the bases are
    referenced by checksum, not copied."""
    assert BUNDLED.name == "speechpress-smol"
    total, dtypes, keys = _stored(BUNDLED)
    assert total <= 30 * 2**20, total  # the merged model would be 412 MB
    assert dtypes == {"F16"}
    assert sum(k.endswith(".delta_up") for k in keys) == 7 * 30  # every linear layer of the 30 LLM layers
    assert not [k for k in keys if k.startswith("encoder.")]  # the encoder is Whisper-base's own, frozen
    config = json.loads((BUNDLED / "config.json").read_text())
    assert set(config["bases"]) == {"encoder", "llm"}


@needs_packaged_bases
def test_speechpress_smol_transcribes_unseen_voices(unseen_utterances):
    model = SpeechLM.from_pretrained("speechpress-smol", device="cpu")
    assert set(model.presses) == {"sst"}
    assert default_presses(model) == ["sst:8", "avgpool:4"]
    refs, hyps = transcribe_rows(model, *unseen_utterances, max_new_tokens=48)
    wer = jiwer.wer(refs, hyps)
    assert wer < SMOL_WER_LIMIT, (wer, list(zip(refs, hyps)))


def test_speechpress_tiny_loads_by_name_and_hears(unseen_utterances):
    """The small, fast bundled model; a random-weight model of the same shape cannot get under the limit."""
    tiny = SpeechLM.from_pretrained("speechpress-tiny", device="cpu")
    total, dtypes, _ = _stored(BUNDLED.parent / "speechpress-tiny")
    assert total <= 30 * 2**20 and dtypes == {"F16"}
    assert set(tiny.presses) == {"hfq"}
    assert default_presses(tiny) == ["hfq@1.67", "avgpool:4"]
    assert 5e6 < sum(p.numel() for p in tiny.parameters()) < 20e6
    refs, hyps = transcribe_rows(tiny, *unseen_utterances, max_new_tokens=160)  # byte tokens
    cer = jiwer.cer(refs, hyps)
    assert cer < TINY_CER_LIMIT, (cer, list(zip(refs, hyps)))


@needs_packaged_bases
def test_demo_with_no_arguments_uses_the_bundled_model(capsys):
    assert main(["demo", "--minutes", "0.5"]) == 0
    out = capsys.readouterr().out
    for spec in ("identity", "sst:8", "avgpool:4"):
        assert f"\n{spec:<10} " in out, spec
    assert "peak memory of this process" in out

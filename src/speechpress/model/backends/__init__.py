"""transformers speech LLMs behind the SpeechLM interface, chosen by the checkpoint's ``model_type``.

Each backend hands SpeechLM the checkpoint's own audio tower, projector and decoder (shared, not copied) and
overrides only what differs: how a batch of 30 s windows is encoded, the chat template, where decoding stops,
and saving. Everything else (presses, prefill, answering, cost) is SpeechLM's.
"""

from __future__ import annotations

from pathlib import Path

from speechpress.errors import ModelLoadError

BACKENDS = {
    "qwen2_audio": "Qwen2-Audio (Qwen2AudioForConditionalGeneration), e.g. Qwen/Qwen2-Audio-7B-Instruct",
    "qwen2_5_omni": "Qwen2.5-Omni, thinker only (text output), e.g. Qwen/Qwen2.5-Omni-7B",
    "qwen2_5_omni_thinker": "a saved Qwen2.5-Omni thinker (Qwen2_5OmniThinkerForConditionalGeneration)",
}


def load_backend_model(directory: Path, model_type: str | None, device=None, dtype=None, system_prompt: str | None = None,
                       attn_implementation: str | None = None):
    """A SpeechLM over the transformers checkpoint in ``directory``."""
    if model_type == "qwen2_audio":
        from speechpress.model.backends.qwen2_audio import Qwen2AudioSpeechLM

        return Qwen2AudioSpeechLM.load(directory, device=device, dtype=dtype, system_prompt=system_prompt,
                                       attn_implementation=attn_implementation)
    if model_type in ("qwen2_5_omni", "qwen2_5_omni_thinker"):
        from speechpress.model.backends.qwen2_5_omni import Qwen25OmniSpeechLM

        return Qwen25OmniSpeechLM.load(directory, model_type, device=device, dtype=dtype, system_prompt=system_prompt,
                                       attn_implementation=attn_implementation)
    supported = ", ".join(sorted(BACKENDS))
    raise ModelLoadError(
        f"{directory}: neither a speechpress model nor a supported transformers checkpoint "
        f"(model_type {model_type!r}; supported: {supported})"
    )


def save_backend_model(model, directory) -> None:
    """The checkpoint as transformers writes it, plus tokenizer (with chat template) and any trained presses;
    written beside the target and moved into place."""
    from transformers import WhisperFeatureExtractor

    from speechpress.model.backends.base import save_presses
    from speechpress.model.persistence import refuse_int8_encoder, write_model_dir

    refuse_int8_encoder(model)
    def write(tmp: Path) -> None:
        model.hf_model.save_pretrained(str(tmp))
        model.tokenizer.save_pretrained(str(tmp))
        WhisperFeatureExtractor(feature_size=model.config.num_mel_bins).save_pretrained(str(tmp))
        save_presses(model, tmp)

    write_model_dir(directory, write)


__all__ = ["BACKENDS", "load_backend_model", "save_backend_model"]

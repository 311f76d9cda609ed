"""AutoSpeechLM: load any model by directory or hub id, from above both ``SpeechLM`` and the backends.

A speechpress directory (its config.json carries the speechpress marker) loads as a ``SpeechLM``; a transformers
checkpoint goes to the backend of its ``model_type`` (a ``SpeechLM`` subclass). Only this module knows both, so
``persistence`` (the directory format) and the backends never import each other, and nothing below imports
this module; ``SpeechLM.from_pretrained`` calls it for compatibility.
"""

from __future__ import annotations

from speechpress.errors import ModelLoadError
from speechpress.model.backends import load_backend_model
from speechpress.model.persistence import CONFIG_NAME, MARKER_KEY, load_model, read_json, resolve_model_dir
from speechpress.model.speechlm import SpeechLM


class AutoSpeechLM:
    """``AutoSpeechLM.from_pretrained(path_or_hub_id)``: the right class for what the directory holds."""

    @staticmethod
    def from_pretrained(
        name_or_path, device: str | None = None, dtype=None, system_prompt: str | None = None, cls: type = SpeechLM,
        attn_implementation: str | None = None,
    ) -> SpeechLM:
        """``cls``: the class a speechpress directory loads as (a subclass calling its own from_pretrained).
        ``device="auto"``: a checkpoint is spread over the available devices (transformers' ``device_map="auto"``),
        a speechpress model goes to cuda when there is one. ``attn_implementation``: the LLM's attention kernel
        (``sdpa``, ``eager``, ``flash_attention_2``, ...), as transformers names them."""
        directory = resolve_model_dir(name_or_path)
        config_path = directory / CONFIG_NAME
        if not config_path.exists():
            raise ModelLoadError(f"{directory}: not a speechpress model (no {CONFIG_NAME})")
        data = read_json(config_path)
        if MARKER_KEY not in data:
            return load_backend_model(directory, data.get("model_type"), device=device, dtype=dtype, system_prompt=system_prompt,
                                      attn_implementation=attn_implementation)
        return load_model(cls, directory, device=device, dtype=dtype, system_prompt=system_prompt,
                          attn_implementation=attn_implementation)


__all__ = ["AutoSpeechLM"]

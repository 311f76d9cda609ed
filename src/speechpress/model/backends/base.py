"""What every transformers backend shares: a causal-LM view over a checkpoint's own text model and LM head,
reading the checkpoint's tokenizer, chat template and feature-extractor settings, and saving it back.

A backend turns a transformers speech LLM into the three modules SpeechLM runs (audio tower, projector, causal
LM) without copying a weight: the modules are the checkpoint's own, so the transformers model keeps working and
``save_pretrained`` writes a checkpoint transformers can load again.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from speechpress.errors import ModelLoadError
from speechpress.model.persistence import read_json, torch_dtype  # noqa: F401 (torch_dtype: re-export)

# The presses a backend model was given after training live beside the checkpoint, never inside its files.
PRESSES_CONFIG = "speechpress_presses.json"
PRESSES_WEIGHTS = "speechpress_presses.safetensors"


class CausalLMView(nn.Module):
    """``model`` (a transformers decoder stack) + ``lm_head`` as one causal LM with the forward SpeechLM, the
    SST press and SpeechPrune use; the modules are shared with the checkpoint, not copied."""

    def __init__(self, model: nn.Module, lm_head: nn.Module, config):
        super().__init__()
        self.model = model
        self.lm_head = lm_head
        self.config = config

    @property
    def base_model(self) -> nn.Module:
        return self.model

    def get_decoder(self) -> nn.Module:
        return self.model

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def forward(
        self,
        input_ids=None,
        inputs_embeds=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache=None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        out = self.model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return CausalLMOutputWithPast(logits=self.lm_head(hidden), past_key_values=out.past_key_values)


def load_tokenizer(directory: Path, default_template: str | None = None):
    """The checkpoint's tokenizer with its chat template (the processor's when only the processor has one, else
    the model family's published default)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as err:
        raise ModelLoadError(f"{directory}: cannot load the tokenizer ({type(err).__name__}: {err})") from None
    if not getattr(tokenizer, "chat_template", None):
        for name in ("chat_template.jinja", "chat_template.json"):
            path = directory / name
            if path.exists():
                text = path.read_text(encoding="utf-8")
                tokenizer.chat_template = json.loads(text)["chat_template"] if name.endswith(".json") else text
                break
        else:
            if default_template is None:
                raise ModelLoadError(f"{directory}: the checkpoint has no chat template (tokenizer or processor)")
            tokenizer.chat_template = default_template
    return tokenizer


def check_feature_extractor(directory: Path, num_mel_bins: int) -> None:
    """speechpress computes Whisper log-mel itself; refuse a checkpoint whose feature extractor differs."""
    path = directory / "preprocessor_config.json"
    if not path.exists():
        return
    data = read_json(path)
    expected = {"feature_size": num_mel_bins, "sampling_rate": 16000, "hop_length": 160, "n_fft": 400}
    wrong = {k: data[k] for k, v in expected.items() if k in data and data[k] != v}
    if wrong:
        raise ModelLoadError(f"{path}: feature extractor settings {wrong} differ from the Whisper log-mel speechpress computes ({expected})")


# ------------------------------------------------------------------- what every Qwen-family backend reads
def text_config_dict(text_config, **extra) -> dict:
    """The decoder's shape (what the profiler and press sizes read), from a transformers text config."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
            "intermediate_size", "vocab_size", "max_position_embeddings", "tie_word_embeddings", "attention_bias")
    data = {k: getattr(text_config, k) for k in keys if getattr(text_config, k, None) is not None}
    return {**data, **extra}


def encoder_config_dict(audio_config, **extra) -> dict:
    keys = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins", "max_source_positions")
    return {**{k: getattr(audio_config, k) for k in keys}, **extra}


def special_tokens(tokenizer, audio_token_id: int) -> dict:
    audio_token = tokenizer.convert_ids_to_tokens(audio_token_id)
    if not isinstance(audio_token, str):
        raise ModelLoadError(f"the tokenizer has no token for the config's audio_token_id {audio_token_id}")
    return dict(audio_bos="<|audio_bos|>", audio_token=audio_token, audio_eos="<|audio_eos|>")


def stop_ids(tokenizer, generation_config) -> set[int]:
    """Where decoding stops: the tokenizer's eos, the checkpoint's generation eos ids, and <|im_end|>."""
    ids = {tokenizer.eos_token_id}
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    ids |= set(eos) if isinstance(eos, (list, tuple)) else {eos}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if im_end is not None and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return {i for i in ids if i is not None}


def save_presses(model, directory: Path) -> None:
    """A backend model's trained presses, beside the checkpoint files."""
    from safetensors.torch import save_model

    if not model.config.presses:
        return
    (directory / PRESSES_CONFIG).write_text(json.dumps(model.config.presses, indent=2, sort_keys=True) + "\n")
    save_model(model.presses, str(directory / PRESSES_WEIGHTS))


def attn_kwargs(attn_implementation: str | None) -> dict:
    """``from_pretrained`` keywords for an attention kernel choice (none: the checkpoint's default)."""
    return {} if attn_implementation is None else {"attn_implementation": attn_implementation}


def finish_loading(model, directory: Path, device=None):
    """What every backend does after building its model: check the feature extractor, load trained presses,
    move to the device (``auto``: transformers' device map already placed every module), eval mode."""
    check_feature_extractor(directory, model.config.num_mel_bins)
    load_presses(model, directory)
    if device and device != "auto":
        model.to(device)
    elif device == "auto":
        model.presses.to(model.device)  # trained presses go where the encoder went
    return model.eval()


def load_presses(model, directory: Path) -> None:
    from safetensors.torch import load_model

    if not (directory / PRESSES_CONFIG).exists():
        return
    model.config.presses = read_json(directory / PRESSES_CONFIG)
    model.presses = nn.ModuleDict({name: model._new_press(name, **kw) for name, kw in model.config.presses.items()})
    try:
        load_model(model.presses, str(directory / PRESSES_WEIGHTS))
    except Exception as err:
        raise ModelLoadError(f"{directory / PRESSES_WEIGHTS}: cannot load the trained presses ({type(err).__name__}: {err})") from None

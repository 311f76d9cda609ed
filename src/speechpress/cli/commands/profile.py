"""`speechpress profile`: what a recording costs a real-size speech LLM, uncompressed beside compressed.

Analytic by default (``speechpress.cost_model.estimate_cost``: no weights, any model size). ``--measure`` also builds
the model (random weights for a card or named config; a model directory's own weights) on the available device,
runs each duration through it and appends measured rows (``speechpress.evaluate.cost.measure_cost``) beside
analytic figures for exactly what was run (the template's prefix as prompt, no answer, dense attention).
"""

from __future__ import annotations

import json

from speechpress.cli.common import add_press_args, check_number, press_options
from speechpress.errors import ConfigError, PressError
from speechpress.cost_model import MAX_MINUTES

GB = 1e9
TFLOP = 1e12
# Press settings that change the analytic counts; any other --press-option changes nothing here and is refused.
COST_OPTIONS = {"interval_tokens"}


def register(sub) -> None:
    p = sub.add_parser(
        "profile",
        help="analytic tokens, KV cache, memory and FLOPs per recording length, for real model sizes",
        description=(
            "Analytic cost of a speech LLM on recordings of the given lengths, from its architecture only "
            "(no weights): audio tokens into the LLM, KV cache, weights, a peak-memory estimate and prefill "
            "FLOPs, uncompressed beside the chosen press. See docs/profile.md for what is counted."
        ),
    )
    p.add_argument("--model-config", required=True, metavar="NAME",
                   help="model card (qwen2-audio-7b, ... see speechpress.model.cards), a named config (tiny), a model "
                   "directory or a SpeechLMConfig JSON/YAML file")
    p.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0, 60.0, 120.0], help=f"recording lengths, at most {MAX_MINUTES} (default: 1 10 60 120)")
    add_press_args(p)
    p.add_argument("--prompt-tokens", type=int, default=32, help="text tokens of template and question after the audio (default 32)")
    p.add_argument("--answer-tokens", type=int, default=64, help="generated tokens, cached too (default 64)")
    p.add_argument("--dtype", default="bf16", help="weights and KV element type: bf16, fp16, fp32, int8 (default bf16)")
    p.add_argument(
        "--dense-attention",
        action="store_true",
        help="count attention FLOPs as T^2 (what eager/SDPA kernels compute) instead of the causal T(T+1)/2",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output: every field of every row")
    m = p.add_argument_group("measured cost (--measure)")
    m.add_argument("--measure", action="store_true",
                   help="also build the model (random weights unless a model directory is given), run every duration "
                   "on the available device and print measured tokens, KV bytes, peak memory, latency and counted FLOPs")
    m.add_argument("--device", default=None, help="for --measure: cpu, cuda, cuda:1 (default: cuda if available)")
    m.add_argument("--measure-answer-tokens", type=int, default=16, help="tokens decoded per measured row (default 16)")
    p.set_defaults(func=run)


def chain_from_args(args) -> list[tuple]:
    """The press chain of --press/--ratio/--tokens-per-second, with names checked against the registry."""
    from speechpress.presses import available_presses, parse_press_spec

    known = available_presses()
    chain = []
    for name, ratio, tps in parse_press_spec(args.press, args.ratio, args.tokens_per_second):
        if name not in known:
            raise PressError(f"unknown press {name!r}; known: {', '.join(sorted(known))}")
        if name == "identity":
            continue
        if ratio is None and tps is None and not known[name].default_target:
            raise PressError(f"press {name!r} needs a target: --ratio K or --tokens-per-second T (or {name}:K)")
        chain.append((name, ratio, tps))
    return chain


def resolve_config(spec: str):
    """(config, model directory or None) for a card name, a named config, a model directory or a config file."""
    from pathlib import Path

    from speechpress.model.cards import MODEL_CARDS, get_model_card
    from speechpress.model.config import NAMED_CONFIGS

    if spec in MODEL_CARDS:
        return get_model_card(spec), None
    path = Path(spec)
    if path.is_dir():
        from speechpress.errors import ModelLoadError
        from speechpress.model.persistence import CONFIG_NAME, MARKER_KEY
        from speechpress.model.config import SpeechLMConfig

        try:
            data = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ModelLoadError(f"{path}: not a model directory ({err})") from None
        if not isinstance(data, dict) or MARKER_KEY not in data:
            return None, path  # a transformers checkpoint: its config comes from loading it (--measure)
        data.pop(MARKER_KEY)
        return SpeechLMConfig.from_dict(data, source=str(path / CONFIG_NAME)), path
    if spec in NAMED_CONFIGS or path.is_file():
        from speechpress.model.config import named_or_file_config

        return named_or_file_config(spec), None
    raise ConfigError(
        f"unknown model config {spec!r}: not a model card ({', '.join(sorted(MODEL_CARDS))}), a named config "
        f"({', '.join(NAMED_CONFIGS)}), a model directory or a config file"
    )


def build_measured_model(config, directory, dtype: str, device: str | None):
    import torch

    from speechpress.model.speechlm import SpeechLM, default_device

    torch_dtype = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
                   "fp16": torch.float16, "float16": torch.float16}.get(dtype)
    if torch_dtype is None:
        raise ConfigError(f"--measure runs fp32, bf16 or fp16 models, not {dtype}")
    device = device or default_device()
    if directory is not None:
        return SpeechLM.from_pretrained(directory, device=device, dtype={torch.float32: "fp32", torch.bfloat16: "bf16",
                                                                        torch.float16: "fp16"}[torch_dtype])
    model = SpeechLM.from_config(config, seed=0)
    return model.to(device=device, dtype=torch_dtype)


def run(args) -> int:
    from speechpress.cost_model import estimate_cost

    config, directory = resolve_config(args.model_config)
    model = None
    if config is None:  # a transformers checkpoint folder: only measurable, and its config comes from loading it
        if not args.measure:
            raise ConfigError(f"{directory}: a transformers checkpoint; its analytic profile needs --measure (to load it)")
        model = build_measured_model(None, directory, args.dtype, args.device)
        config = model.config
    for minutes in args.minutes:
        check_number("--minutes", minutes, 0, MAX_MINUTES, above=True)
    chain = chain_from_args(args)
    options = press_options(args)
    unknown = sorted(set(options) - COST_OPTIONS)
    if unknown:
        raise ConfigError(f"--press-option {', '.join(unknown)} does not change the analytic cost; only {', '.join(sorted(COST_OPTIONS))} does")
    kw = dict(
        prompt_tokens=args.prompt_tokens,
        answer_tokens=args.answer_tokens,
        dtype=args.dtype,
        attention="dense" if args.dense_attention else "causal",
        model=args.model_config,
        **options,
    )
    rows = []
    for minutes in args.minutes:
        base = estimate_cost(config, minutes * 60.0, None, **kw)
        pressed = estimate_cost(config, minutes * 60.0, chain, **kw)
        rows.append((minutes, base, pressed))
    measured = []
    if args.measure:
        measured = measure_rows(args, config, directory, model, chain, options)
    if args.json:
        out = [dict(minutes=m, uncompressed=b.to_dict(), compressed=p.to_dict()) for m, b, p in rows]
        for row, meas in zip(out, measured):
            row["measured"] = meas
        print(json.dumps(out, indent=2))
    else:
        print(render(args.model_config, rows))
        if measured:
            print()
            print(render_measured([m for m, _, _ in rows], measured))
    return 0


def measure_rows(args, config, directory, model, chain, options) -> list[dict]:
    """Measured {uncompressed, compressed} per duration, shortest first (on CPU the peak RSS never goes down)."""
    from speechpress.evaluate.cost import measure_cost

    if args.measure_answer_tokens < 1:
        raise ConfigError("--measure-answer-tokens must be >= 1")
    model = model or build_measured_model(config, directory, args.dtype, args.device)
    spec = "+".join(f"{n}:{r:g}" if r is not None else (f"{n}@{t:g}" if t is not None else n) for n, r, t in chain) or "identity"
    pressed = model.press_chain(spec, options=options or None)
    plain = model.press_chain("identity")
    out = {}
    for minutes in sorted(set(args.minutes)):
        seconds = minutes * 60.0
        out[minutes] = dict(
            uncompressed=measure_cost(model, seconds, plain, answer_tokens=args.measure_answer_tokens),
            compressed=measure_cost(model, seconds, pressed, answer_tokens=args.measure_answer_tokens),
        )
    return [out[m] for m in args.minutes]


def render_measured(minutes: list[float], measured: list[dict]) -> str:
    """Measured rows, each beside the analytic figure for exactly what was run (prefix prompt, no answer, dense)."""
    first = measured[0]["uncompressed"]
    lines = [
        f"measured on {first['device']} ({first['dtype']}, weights as built), press {measured[0]['compressed']['chain']}; "
        "each cell: measured / analytic for the same run",
        f"peak memory is {'CUDA max allocated, reset per row' if first['peak_memory_kind'] == 'cuda_max_allocated' else 'the process peak RSS (never goes down within a process)'}",
        "",
        f"{'minutes':>8}  {'side':<12}  {'audio tokens':>15}  {'KV MB':>17}  {'peak MB':>8}  {'prefill s':>9}  "
        f"{'decode ms/tok':>13}  {'prefill GFLOPs':>19}",
    ]
    for m, row in zip(minutes, measured):
        for side in ("uncompressed", "compressed"):
            r = row[side]
            a = r["analytic"] or {}
            flops = "–" if r["prefill_flops"] is None else f"{r['prefill_flops'] / 1e9:.2f}"
            lines.append(
                f"{m:>8g}  {side:<12}  {r['audio_tokens']:>6} / {a.get('audio_tokens', '–'):<6}"
                f"  {r['kv_bytes'] / 1e6:>7.3f} / {a.get('kv_bytes', 0) / 1e6:<7.3f}  {r['peak_bytes'] / 1e6:>8.0f}"
                f"  {r['prefill_seconds']:>9.3f}  {r['decode_seconds_per_token'] * 1e3:>13.2f}"
                f"  {flops:>8} / {a.get('prefill_flops', 0) / 1e9:<8.2f}"
            )
    return "\n".join(lines)


def render(model: str, rows) -> str:
    """A table with one line per duration; each cost shows uncompressed -> compressed."""
    if not rows:
        return f"model {model}: no durations"
    first = rows[0][1]
    lines = [
        f"model {model}, press {rows[0][2].chain}; {first.bytes_per_element} bytes/element, prompt "
        f"{first.prompt_tokens} + answer {first.answer_tokens} tokens, {first.attention} attention FLOPs",
        "each cell: uncompressed -> compressed",
        "",
        f"{'minutes':>8}  {'audio tokens':>17}  {'tok/s':>12}  {'KV GB':>15}  {'weights GB':>10}  {'peak GB':>15}"
        f"  {'prefill TFLOPs':>19}",
    ]
    for minutes, b, p in rows:
        lines.append(
            f"{minutes:>8g}  {b.audio_tokens:>7} -> {p.audio_tokens:>6}  {b.tokens_per_second:>5.2f} -> {p.tokens_per_second:<5.2f}"
            f"  {b.kv_peak_bytes / GB:>6.2f} -> {p.kv_peak_bytes / GB:<6.2f}  {b.weight_bytes / GB:>10.2f}  {b.peak_bytes / GB:>6.2f} -> {p.peak_bytes / GB:<6.2f}"
            f"  {b.prefill_flops / TFLOP:>8.1f} -> {p.prefill_flops / TFLOP:<8.1f}".rstrip()
        )
    lines.append("")
    lines.append("KV GB is the most the cache holds (for sst: kept SSTs + prompt + answer, or memory + one interval).")
    return "\n".join(lines)

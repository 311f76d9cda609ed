"""`speechpress profile`: what a recording costs a real-size speech LLM, uncompressed beside compressed.

Analytic only for now (``speechpress.profile.estimate_cost``: no weights, any model size). A measured path
belongs in ``run`` where marked: it would build a SpeechLM, run the same durations and append rows with the
same fields, so ``render`` prints both.
"""

from __future__ import annotations

import json
import math

from speechpress.cli.common import add_press_args, press_options
from speechpress.errors import ConfigError, PressError

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
    p.add_argument("--model-config", required=True, metavar="NAME", help="model card, e.g. qwen2-audio-7b (see speechpress.model.cards)")
    p.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0, 60.0, 120.0], help="recording lengths (default: 1 10 60 120)")
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
        if ratio is None and tps is None and name != "hfq":
            raise PressError(f"press {name!r} needs a target: --ratio K or --tokens-per-second T (or {name}:K)")
        chain.append((name, ratio, tps))
    return chain


def run(args) -> int:
    from speechpress.model.cards import get_model_card
    from speechpress.profile import estimate_cost

    config = get_model_card(args.model_config)
    bad = [m for m in args.minutes if not (math.isfinite(m) and m > 0)]
    if bad:
        raise ConfigError(f"--minutes must be positive, got {', '.join(f'{m:g}' for m in bad)}")
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
    # Extension point: a measured path (a real SpeechLM run per duration) would add its rows here.
    if args.json:
        print(json.dumps([dict(minutes=m, uncompressed=b.to_dict(), compressed=p.to_dict()) for m, b, p in rows], indent=2))
    else:
        print(render(args.model_config, rows))
    return 0


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

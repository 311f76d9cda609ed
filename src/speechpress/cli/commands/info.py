"""`speechpress info`: what a recording is and how many audio tokens it becomes, without loading a model."""

from __future__ import annotations

from speechpress.cli.common import add_press_args, emit_json, press_options


def register(sub) -> None:
    p = sub.add_parser(
        "info",
        help="duration, format, windows and audio tokens of a recording",
        description=(
            "Decode and validate a recording (streamed: memory does not grow with duration) and report its "
            "duration, sample rate, channels, 30 s encoder windows and the audio tokens it becomes, before and "
            "after a press. Token rates come from --model's config, or the tiny config's 25 tokens/s."
        ),
    )
    p.add_argument("audio", help="audio file (wav, flac, ogg, mp3, ... anything libsndfile reads)")
    p.add_argument("--model", default=None, help="model directory whose token rate to use (optional)")
    add_press_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    import math

    from speechpress.audio import probe_audio
    from speechpress.model.config import TINY, SpeechLMConfig
    from speechpress.model.lengths import audio_token_count, chain_token_counts
    from speechpress.presses.chain import build_chain

    config = TINY
    if args.model:
        from speechpress.model.persistence import CONFIG_NAME, MARKER_KEY, resolve_model_dir

        import json

        data = json.loads((resolve_model_dir(args.model) / CONFIG_NAME).read_text())
        data.pop(MARKER_KEY, None)
        config = SpeechLMConfig.from_dict(data, source=args.model)
    chain = build_chain(config, args.press, args.ratio, args.tokens_per_second, press_options(args))
    info = probe_audio(args.audio)
    samples_16k = round(info.frames * config.sample_rate / info.sample_rate)
    tokens = audio_token_count(samples_16k, config)
    after = chain_token_counts(tokens, info.duration, chain)
    final = after[-1] if after else tokens
    row = {
        "path": info.path,
        "duration_s": round(info.duration, 3),
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "format": f"{info.format}/{info.subtype}",
        "windows": max(1, math.ceil(info.duration / config.window_seconds)),
        "audio_tokens": tokens,
        "press": args.press,
        "ratio": args.ratio,
        "tokens_per_second_target": args.tokens_per_second,
        "tokens_after_press": final,
        "tokens_per_second": round(final / info.duration, 3) if info.duration else 0.0,
        "compression": round(tokens / final, 3) if final else None,
    }
    if args.json:
        emit_json(row)
    else:
        for key, value in row.items():
            if value is not None:
                print(f"{key:<20} {value}")
    return 0

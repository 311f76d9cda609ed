"""`speechpress transcribe`: long-form transcription, window by window."""

from __future__ import annotations

import math

from speechpress.cli.common import (
    add_generation_args, add_model_args, add_press_args, check_number, emit_json, generation_kwargs, load_model, press_options,
)

PROMPT = "Transcribe the audio."
MIN_CHUNK_SECONDS = 1.0  # shorter chunks hold less than a word each, and an hour became 3,600,000 prefills


def register(sub) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe a recording of any length",
        description=(
            "Transcribe a recording chunk by chunk (default 30 s chunks, the encoder's window), each chunk "
            "prefilled under --press, and join the texts. Never truncates."
        ),
    )
    p.add_argument("audio", help="audio file")
    add_model_args(p)
    add_press_args(p)
    add_generation_args(p, max_new_tokens=256)
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="seconds per transcribed chunk, from 1 to the model's window (default 30)")
    p.add_argument("--prompt", default=PROMPT, help=f"instruction given with each chunk (default: {PROMPT!r})")
    p.add_argument("--json", action="store_true", help="machine-readable output with per-chunk times")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from speechpress.audio import Audio, header_seconds, stream_audio

    check_number("--chunk-seconds", args.chunk_seconds, MIN_CHUNK_SECONDS)
    gen = generation_kwargs(args)
    model = load_model(args)
    # A chunk longer than the encoder's window needs a longer answer than one window's worth of --max-new-tokens.
    check_number("--chunk-seconds", args.chunk_seconds, MIN_CHUNK_SECONDS, model.config.window_seconds)
    chain = model.press_chain(args.press, args.ratio, args.tokens_per_second, press_options(args))
    rate = model.config.sample_rate
    step = int(args.chunk_seconds * rate)
    chunks = []
    expected = max(1, math.ceil(header_seconds(args.audio) * rate / step))
    start = 0
    # The recording is decoded chunk by chunk (stream_audio): never whole in memory, however long it is.
    for samples in tqdm(stream_audio(args.audio, step, rate), total=expected, desc="transcribing", unit="chunk",
                        disable=expected < 2, leave=False):
        piece = Audio(samples, rate, str(args.audio), rate, 1, "STREAM")
        answer = model.ask(piece, args.prompt, press=chain, **gen)[0]
        chunks.append({"start": start / rate, "end": (start + len(samples)) / rate, "text": answer.text})
        start += len(samples)
    text = " ".join(c["text"].strip() for c in chunks if c["text"].strip())
    if args.json:
        emit_json({"audio": args.audio, "press": args.press, "text": text, "chunks": chunks})
    else:
        print(text)
    return 0

"""`speechpress ask`: answer questions about a recording of any length, optionally compressed."""

from __future__ import annotations

from speechpress.cli.common import add_generation_args, add_model_args, add_press_args, emit_json, generation_kwargs, load_model, press_options


def register(sub) -> None:
    p = sub.add_parser(
        "ask",
        help="ask one or more questions about a recording",
        description=(
            "Load a recording (any length: it is encoded in 30 s windows, never truncated), compress its audio "
            "tokens with --press, prefill the LLM once and answer every QUESTION from the same cache. Query-aware "
            "presses (speechprune) compress once per question instead."
        ),
        epilog="example: speechpress ask talk.flac 'Who spoke first?' --model runs/tiny --press avgpool --ratio 4",
    )
    p.add_argument("audio", help="audio file")
    p.add_argument("questions", nargs="+", metavar="QUESTION", help="one or more questions")
    add_model_args(p)
    add_press_args(p)
    add_generation_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output with token counts, time and memory")
    p.set_defaults(func=run)


def run(args) -> int:
    from speechpress.memory import peak_memory_bytes

    gen = generation_kwargs(args)
    model = load_model(args)
    chain = model.press_chain(args.press, args.ratio, args.tokens_per_second, press_options(args))
    answers = model.ask(args.audio, args.questions, press=chain, progress=True, **gen)  # streamed, window by window
    peak = peak_memory_bytes(model.device)
    if args.json:
        emit_json({"audio": args.audio, "peak_memory_bytes": peak, "answers": [a.to_dict() for a in answers]})
        return 0
    for a in answers:
        if len(answers) > 1:
            print(f"Q: {a.question}")
        print(a.text)
    first = answers[0]
    print(
        f"[{first.duration:.1f} s audio, {first.encoder_tokens} audio tokens -> {first.llm_audio_tokens} into the LLM, "
        f"{first.cached_audio_tokens} kept in cache; press {first.press}; prefill {first.prefill_seconds:.2f} s; "
        f"peak memory {peak / 2**20:.0f} MB]",
        flush=True,
    )
    return 0

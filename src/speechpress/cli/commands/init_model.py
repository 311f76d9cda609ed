"""`speechpress init-model`: write a randomly initialised model so every command can run before training."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "init-model",
        help="write a random-weight model directory (its answers are gibberish)",
        description=(
            "Write a randomly initialised speech LLM (config.json, model.safetensors, tokenizer) so that every "
            "command can be exercised before any training. Its output is gibberish by design; train it with "
            "`speechpress train` or load a trained model instead."
        ),
    )
    p.add_argument("--config", default="tiny", help="named size (tiny) or a JSON/YAML SpeechLMConfig file (default: tiny)")
    p.add_argument(
        "--backend",
        choices=["speechpress", "qwen2_audio", "qwen2_5_omni"],
        default="speechpress",
        help="write a tiny random checkpoint of a transformers architecture instead (qwen2_audio, qwen2_5_omni: "
        "saved like the real ones, to try the backends offline; --config is then ignored)",
    )
    p.add_argument(
        "--encoder",
        metavar="SRC",
        help="compose from pretrained parts instead: a Whisper encoder source (whisper-base, whisper-small, a "
        "transformers or CTranslate2 directory, package:NAME, or a hub id); needs --llm",
    )
    p.add_argument(
        "--llm",
        metavar="SRC",
        help="the causal LM of a composed model (smollm2-135m-instruct, a transformers directory, a .gguf file, "
        "package:NAME, or a hub id); the directory written references both bases by sha256 instead of copying them",
    )
    p.add_argument("--projector", choices=["linear", "mlp"], default="mlp", help="projector of a composed model (default mlp)")
    p.add_argument("--encoder-pool", type=int, default=2, help="frames averaged per audio token in a composed model (default 2: 25 tokens/s)")
    p.add_argument("--encoder-pool-mode", choices=["mean", "stack"], default="mean",
                   help="composed model: average each group of frames (mean, Qwen2-Audio) or concatenate them (stack)")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing model directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from speechpress.io import output_dir

    with output_dir(args.out):  # checked before anything is built; a failed write is one error line
        return _run(args)


def _run(args) -> int:
    from speechpress.errors import ConfigError
    from speechpress.model.config import named_or_file_config
    from speechpress.model.speechlm import SpeechLM

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise ConfigError(f"{out}: already exists and is not empty (use --force to overwrite)")
    if (args.encoder is None) != (args.llm is None):
        raise ConfigError("--encoder and --llm go together: a composed model needs both parts")
    if args.encoder_pool < 1:
        raise ConfigError(f"--encoder-pool must be at least 1, got {args.encoder_pool}")
    if args.encoder is not None:
        if args.backend != "speechpress":
            raise ConfigError("--backend and --encoder/--llm are exclusive")
        import sys

        model = SpeechLM.compose(args.encoder, args.llm, projector=args.projector, encoder_pool=args.encoder_pool,
                                 encoder_pool_mode=args.encoder_pool_mode, seed=args.seed,
                                 log=lambda msg: print(msg, file=sys.stderr))
        model.save_pretrained(out)
        trained = sum(p.numel() for p in model.projector.parameters())
        from speechpress.model.bases import describe_bases

        print(f"wrote a composed model to {out}: {describe_bases(model.config)}, referenced by checksum; "
              f"untrained projector ({trained / 1e6:.2f}M parameters): train it before trusting its answers")
        return 0
    if args.backend != "speechpress":
        from speechpress.model.backends.tiny import TINY_BUILDERS

        if out.exists():
            import shutil

            shutil.rmtree(out)
        model = SpeechLM.from_pretrained(_write_tiny(TINY_BUILDERS[args.backend], out, args.seed))
    else:
        model = SpeechLM.from_config(named_or_file_config(args.config), seed=args.seed)
        model.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote a random-weight model ({n / 1e6:.2f}M parameters) to {out}; its answers are gibberish until trained")
    return 0


def _write_tiny(builder, out: Path, seed: int) -> Path:
    """Build into a sibling temporary directory and move it into place (never a half-written checkpoint)."""
    import os
    import shutil
    import tempfile

    from speechpress.io import as_if_created

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        builder(tmp, seed=seed)
        as_if_created(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out

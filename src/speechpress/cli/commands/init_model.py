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
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing model directory")
    p.set_defaults(func=run)


def load_config(spec: str):
    import json

    import yaml

    from speechpress.errors import ConfigError
    from speechpress.model.config import NAMED_CONFIGS, SpeechLMConfig

    if spec in NAMED_CONFIGS:
        return NAMED_CONFIGS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"{spec}: not a named config ({', '.join(NAMED_CONFIGS)}) and no such file")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot parse ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of SpeechLMConfig fields")
    return SpeechLMConfig.from_dict(data, source=str(path))


def run(args) -> int:
    from speechpress.errors import ConfigError
    from speechpress.model.speechlm import SpeechLM

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise ConfigError(f"{out}: already exists and is not empty (use --force to overwrite)")
    config = load_config(args.config)
    model = SpeechLM.from_config(config, seed=args.seed)
    model.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote a random-weight model ({n / 1e6:.2f}M parameters) to {out}; its answers are gibberish until trained")
    return 0

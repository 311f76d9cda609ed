"""`speechpress train CONFIG.yaml [key=value ...]`: run or resume a training recipe."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train with a recipe (ctc, asr, qa, sst, press, lora); resumes from the last checkpoint",
        description=(
            "Run a training recipe from a YAML config (see configs/train/ and docs/train.md). Overrides such as "
            "train.steps=200 or data.train=[corpus/train.jsonl] are applied on top of the file. A run resumes from "
            "the latest checkpoint in OUTPUT_DIR/checkpoints. Runs under torchrun / accelerate launch unchanged."
        ),
    )
    p.add_argument("config", help="YAML training config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.steps=50 output_dir=runs/x")
    p.add_argument("--export", nargs=2, metavar=("CHECKPOINT", "DIR"), default=None,
                   help="instead of training, write the model the run would save from one of its checkpoints "
                   "(OUTPUT_DIR/checkpoints/step-N) into DIR, to evaluate a run while it trains; the run is not touched")
    p.set_defaults(func=run)


def run(args) -> int:
    from speechpress.io import output_dir
    from speechpress.train import load_config, train

    cfg = load_config(args.config, args.overrides)
    if args.export:
        from pathlib import Path

        from speechpress.errors import ConfigError
        from speechpress.train.loop import export_checkpoint

        checkpoint, target = args.export
        if Path(target).exists():
            raise ConfigError(f"{target} already exists; choose a new folder for the exported model")
        with output_dir(Path(target).parent):
            path = export_checkpoint(cfg, checkpoint, target)
        print(f"wrote {path} (from {checkpoint})")
        return 0
    with output_dir(cfg.output_dir):  # checked before data or model are loaded; a failed write is one error line
        train(cfg)
    return 0

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
    p.set_defaults(func=run)


def run(args) -> int:
    from speechpress.io import output_dir
    from speechpress.train import load_config, train

    cfg = load_config(args.config, args.overrides)
    with output_dir(cfg.output_dir):  # checked before data or model are loaded; a failed write is one error line
        train(cfg)
    return 0

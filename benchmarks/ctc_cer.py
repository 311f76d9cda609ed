"""Character error rate of a phase-0 (ctc recipe) run on utterances it never heard: is the encoder hearing yet?

    python benchmarks/ctc_cer.py RUN_DIR --manifest corpus/validation.jsonl [--checkpoint latest|STEP] [--limit 200]

RUN_DIR is a `speechpress train` output folder of the ctc recipe, finished or not: the weights come from its
latest checkpoint (or --checkpoint STEP) and the architecture from its config.yaml. Every utterance of the
manifest's recordings (validation and test splits use voices and words never used in training) is decoded
greedily by the CTC head and scored with `speechpress.evaluate.metrics.cer` against the CTC-normalised text.
Prints one JSON line: step, utterances, CER, and three decoded examples.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="output_dir of a ctc training run")
    ap.add_argument("--manifest", required=True, help="manifest whose utterances are decoded (validation or test split)")
    ap.add_argument("--checkpoint", default="latest", help="latest (default) or a step number")
    ap.add_argument("--limit", type=int, default=200, help="utterances to decode (default 200)")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()

    import torch
    from safetensors.torch import load_file

    from speechpress.evaluate.metrics import cer
    from speechpress.train import load_config
    from speechpress.train.data import AudioStore, load_training_set
    from speechpress.train.loop import latest_checkpoint, load_initial_model
    from speechpress.train.ctc import ctc_greedy_decode, ctc_normalize
    from speechpress.train.recipes import build_objective

    run = Path(args.run)
    if not (run / "config.yaml").is_file():
        sys.exit(f"error: {run}: not a training run (no config.yaml)")
    cfg = load_config(run / "config.yaml", [f"data.train=[{args.manifest}]", "data.pack_seconds=null", f"data.max_examples={args.limit}"])
    if cfg.recipe != "ctc":
        sys.exit(f"error: {run}: a {cfg.recipe} run; this measures ctc runs")
    ckpt = latest_checkpoint(run / "checkpoints") if args.checkpoint == "latest" else run / "checkpoints" / f"step-{int(args.checkpoint):07d}"
    if ckpt is None or not (ckpt / "trainable.safetensors").is_file():
        sys.exit(f"error: {run}: no checkpoint {args.checkpoint}")
    model = load_initial_model(cfg)
    objective = build_objective(cfg, model, AudioStore(model.config.sample_rate), None)
    unexpected = objective.load_state_dict(load_file(str(ckpt / "trainable.safetensors")), strict=False).unexpected_keys
    if unexpected:
        sys.exit(f"error: {ckpt}: weights that do not fit this model: {unexpected[:3]}")
    objective.eval()
    examples = load_training_set(cfg.data).examples
    predictions, references = [], []
    with torch.inference_mode():
        for i in range(0, len(examples), args.batch):
            batch = objective.prepare(examples[i : i + args.batch], 0)
            rows = objective.encoder_rows(batch["windows"])
            for row in rows:
                predictions.append(ctc_greedy_decode(objective.head(row).argmax(-1).tolist()))
            references += [ctc_normalize(ex.answer) for ex in examples[i : i + args.batch]]
    step = json.loads((ckpt / "state.json").read_text())["step"]
    score = cer(predictions, references, normalizer=None)["cer"]
    examples_out = [{"reference": r, "prediction": p} for r, p in list(zip(references, predictions))[:3]]
    print(json.dumps({"run": str(run), "step": step, "utterances": len(predictions), "cer": score, "examples": examples_out}))


if __name__ == "__main__":
    main()

"""Seconds per optimizer step of every recipe in configs/train on the tiny model, and its loss change.

    python benchmarks/train_steps.py [--steps 12] [--out benchmarks/results/train_steps.json]

Each recipe trains from the random "tiny" model on a small generated corpus (8 x 20 s recordings, seed 0)
with batch 8; the first steps pay for decoding and encoding the clips once (frozen encoders then read the
frame cache), so the figure reported is the median of the steps after the first epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_steps.json"))
    args = ap.parse_args()
    from speechpress.data.synth import synthesize
    from speechpress.train import load_config, train

    tmp = Path(tempfile.mkdtemp(prefix="train-bench-"))
    manifest = synthesize(tmp / "corpus", seed=0, split="train", durations=[20] * 8, jobs=2).manifest
    rows = []
    for cfg_file in sorted((REPO / "configs" / "train").glob("*.yaml")):
        overrides = [f"model.init=tiny", f"output_dir={tmp / cfg_file.stem}", f"data.train=[{manifest}]",
                     f"data.cache_dir={tmp / 'cache'}", "data.max_duration=20", "train.batch_size=8",
                     "train.warmup_steps=0", "train.progress=false", f"train.checkpoint_every={args.steps}"]
        probe = load_config(cfg_file, overrides + (["curriculum=[{alpha: 2, steps: 1}]"] if "sst" in cfg_file.name else []))
        if probe.recipe == "sst":
            third = args.steps // 3
            overrides.append(f"curriculum=[{{alpha: 2, steps: {third}}}, {{alpha: 4, steps: {third}}}, {{alpha: 8, steps: {args.steps - 2 * third}}}]")
        else:
            overrides.append(f"train.steps={args.steps}")
        cfg = load_config(cfg_file, overrides)
        result = train(cfg, log=lambda *_: None)
        log = [json.loads(line) for line in (tmp / cfg_file.stem / "log.jsonl").read_text().splitlines()]
        later = [r["seconds"] for r in log if r["epoch"] > 1.0] or [r["seconds"] for r in log]
        row = {"config": cfg_file.name, "recipe": cfg.recipe, "press": cfg.press.name, "trainable": cfg.train.trainable,
               "first_step_s": log[0]["seconds"], "median_step_s_after_epoch_1": round(statistics.median(later), 3),
               "loss_first": log[0]["loss"], "loss_last": log[-1]["loss"], "total_s": round(result.seconds, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"steps": args.steps, "batch_size": 8, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())

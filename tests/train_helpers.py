"""Shared pieces of the training tests: a tiny generated corpus (once per session) and config builders."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "train"


def make_corpus(root: Path) -> Path:
    """Four 12 s recordings of the generated corpus (train split, seed 0): ~20 utterance clips, every task."""
    from speechpress.data.synth import synthesize

    report = synthesize(root, seed=0, split="train", durations=[12, 12, 12, 12], jobs=2)
    return report.manifest


def base(corpus: Path, out: Path, cache: Path, **sections) -> dict:
    """A config dict for the tiny model on the test corpus; ``sections`` override top-level keys."""
    cfg = {
        "recipe": "asr",
        "output_dir": str(out),
        "model": {"init": "tiny", "seed": 0},
        "data": {"train": [str(corpus)], "cache_dir": str(cache), "max_duration": 12.0},
        "train": {"steps": 4, "batch_size": 4, "lr": 3e-3, "progress": False, "checkpoint_every": 100},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def log_rows(out: Path, name: str = "log.jsonl") -> list[dict]:
    path = Path(out) / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

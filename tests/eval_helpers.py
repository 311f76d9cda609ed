"""Shared builders for the eval / report tests: a tiny generated corpus and a tiny model directory."""

from __future__ import annotations

import json
from pathlib import Path

# Fields that legitimately differ between two runs of the same rows: time, memory, which process did it.
VOLATILE = {"prefill_seconds", "decode_seconds", "peak_memory_bytes", "rank", "prefill_flops_measured", "prefill_id",
            "encode_seconds", "encoder_cache"}


def make_corpus(out: Path) -> Path:
    """Two recordings (8 s, 12 s) with 8 questions in 4 audio groups (a short segment + the whole file, each)."""
    from speechpress.data.synth import synthesize

    synthesize(out, 0, split="test", durations=(8, 12), tasks=["asr_short", "speaker_count", "speaker_gender", "summary"])
    return out / "test.jsonl"


def make_model(out: Path) -> Path:
    from speechpress.cli import main

    assert main(["init-model", "--out", str(out)]) == 0
    return out


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def stable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in VOLATILE}

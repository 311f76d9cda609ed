"""scripts/utterance_manifest.py: one transcription row per utterance of a generated split, loadable as a benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from speechpress.data.loaders import load_manifest
from speechpress.data.synth import synthesize

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "utterance_manifest.py"


def test_rows_are_the_utterances_without_introductions_in_recording_order(tmp_path):
    synthesize(tmp_path, seed=3, split="test", durations=[30], genres=["dictation"], tasks=["asr_short"])
    rec = json.loads(next((tmp_path / "test").glob("*.json")).read_text())
    wanted = [u for u in rec["utterances"] if u["kind"] != "intro"]
    out = tmp_path / "test-utts.jsonl"
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "test"), str(out), "--rows", "3"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = load_manifest(out)
    assert [(r.answer, r.offset) for r in rows] == [(u["text"], u["start"]) for u in wanted[:3]]
    assert all(r.task == "asr_short" and r.metric == "wer" and Path(r.audio).is_file() for r in rows)
    elsewhere = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "test"), str(tmp_path / "sub" / "x.jsonl")],
                               capture_output=True, text=True)
    assert elsewhere.returncode != 0 and "beside" in elsewhere.stderr

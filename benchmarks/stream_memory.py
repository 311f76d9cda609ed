"""Peak memory of encoding a long recording: streamed from its file (``SpeechLM.encode(path)``, window by window)
against decoded whole first (``encode(load_audio(path).samples)``), tiny model on CPU, one fresh process per run.

The streamed peak should stay flat with duration (a few windows of waveform and mel, plus the encoder output,
which grows at 25 tokens/s); the decoded path grows with the waveform (about 230 MB per hour at 16 kHz float32).

    python benchmarks/stream_memory.py [--minutes 10 60 120] [--out benchmarks/results/stream_memory.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = r"""
import resource, sys, numpy as np, torch
from speechpress.model.config import TINY
from speechpress.model.speechlm import SpeechLM
from speechpress.audio import load_audio
model = SpeechLM.from_config(TINY, seed=0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path, mode = sys.argv[1], sys.argv[2]
with torch.inference_mode():  # as SpeechLM.prefill runs it
    tokens = model.encode(path) if mode == "stream" else model.encode(load_audio(path).samples)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(int(tokens.lengths[0]), base * 1024, peak * 1024)
"""


def write_recording(path: Path, minutes: float) -> None:
    """A quiet tone with a little noise, written 60 s at a time (FLAC keeps it small)."""
    import numpy as np
    import soundfile as sf

    rate = 16000
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", rate, 1, "PCM_16", format="FLAC") as f:
        for _ in range(int(round(minutes))):
            t = np.arange(60 * rate) / rate
            f.write((0.05 * np.sin(2 * np.pi * 220 * t) + 0.002 * rng.standard_normal(len(t))).astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 60, 120])
    ap.add_argument("--out", default="benchmarks/results/stream_memory.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes:g}min.flac"
            write_recording(path, minutes)
            row = {"minutes": minutes}
            for mode in ("stream", "decoded"):
                out = subprocess.run([sys.executable, "-c", RUN, str(path), mode], capture_output=True, text=True, check=True)
                tokens, base, peak = (int(v) for v in out.stdout.split())
                row[mode] = {"tokens": tokens, "peak_mb": round(peak / 2**20, 1), "above_model_mb": round((peak - base) / 2**20, 1)}
            row["stream_over_decoded"] = round(row["stream"]["above_model_mb"] / max(row["decoded"]["above_model_mb"], 1e-9), 3)
            rows.append(row)
            print(f"{minutes:>6g} min  tokens {row['stream']['tokens']:>7}  above the loaded model: streamed "
                  f"{row['stream']['above_model_mb']:>7.1f} MB, decoded {row['decoded']['above_model_mb']:>7.1f} MB "
                  f"({row['stream_over_decoded']:.2f}x)", flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

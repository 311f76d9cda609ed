"""Peak memory of encoding a long recording: streamed from its file (``SpeechLM.encode(path)``, window by window)
against decoded whole first (``encode(load_audio(path).samples)``), and streamed with a chain's uniform presses
run as it is encoded (``encode_pressed``, ``--press avgpool:16``), on CPU, one fresh process per run.

The streamed peak grows only with the encoder output (25 tokens/s at the model's width: about 23 MB an hour for
the tiny model, 370 MB for speechpress-smol's 1,024-wide stacked frames); with the presses run as it streams, only
1/k of that; the decoded path also holds the waveform (about 230 MB per hour at 16 kHz float32).

    python benchmarks/stream_memory.py [--model DIR] [--minutes 10 60 120] [--press avgpool:16]
        [--out benchmarks/results/stream_memory.json]
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
from speechpress.presses.streaming import streaming_prefix
path, mode, model_dir, press = sys.argv[1:5]
model = SpeechLM.from_config(TINY, seed=0) if model_dir == "tiny" else SpeechLM.from_pretrained(model_dir)
chain = model.press_chain(press) if mode == "pressed" else []
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.inference_mode():  # as SpeechLM.prefill runs it
    if mode == "decoded":
        tokens = model.encode(load_audio(path).samples)
    else:
        tokens = model.encode_pressed(path, streaming_prefix(chain))[0]
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
    ap.add_argument("--model", default="tiny", help="tiny (random weights, built in-process) or a model directory")
    ap.add_argument("--press", default=None, help="also measure this chain's uniform presses run as it streams")
    ap.add_argument("--out", default="benchmarks/results/stream_memory.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes:g}min.flac"
            write_recording(path, minutes)
            row = {"minutes": minutes}
            row["model"] = args.model
            for mode in ("stream", "decoded") + (("pressed",) if args.press else ()):
                out = subprocess.run([sys.executable, "-c", RUN, str(path), mode, args.model, args.press or "identity"],
                                     capture_output=True, text=True, check=True)
                tokens, base, peak = (int(v) for v in out.stdout.split())
                row[mode] = {"tokens": tokens, "peak_mb": round(peak / 2**20, 1), "above_model_mb": round((peak - base) / 2**20, 1)}
            row["stream_over_decoded"] = round(row["stream"]["above_model_mb"] / max(row["decoded"]["above_model_mb"], 1e-9), 3)
            rows.append(row)
            print(f"{minutes:>6g} min  tokens {row['stream']['tokens']:>7}  above the loaded model: streamed "
                  f"{row['stream']['above_model_mb']:>7.1f} MB, decoded {row['decoded']['above_model_mb']:>7.1f} MB "
                  f"({row['stream_over_decoded']:.2f}x)"
                  + (f"; {args.press} as it streams {row['pressed']['above_model_mb']:.1f} MB ({row['pressed']['tokens']} tokens)"
                     if args.press else ""), flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

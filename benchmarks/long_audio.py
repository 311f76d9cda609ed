"""Peak memory and time of `speechpress info` on a 2-hour file and `speechpress ask` on a 10-minute file.

Each command runs in a fresh subprocess; its peak resident memory comes from os.wait4's rusage. The baseline
is a process that only imports speechpress and torch, measured in the same run (these machines are noisy).

    python benchmarks/long_audio.py [--hours 2] [--ask-minutes 10] [--out benchmarks/results/long_audio.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def make_recording(path: Path, seconds: float) -> None:
    """A long FLAC written block by block from real espeak-ng speech (never held whole in memory)."""
    from speechpress.data.tts import Voice, speak

    lines = [
        "The committee will meet again on Thursday to review the shipping schedule.",
        "Our guest today is an engineer who builds bridges in Norway.",
        "Revenue grew by twelve percent in the third quarter.",
    ]
    block = np.concatenate(
        [np.concatenate([speak(t, Voice("en-us", v, 165, p)), np.zeros(4000, np.float32)]) for t, v, p in
         zip(lines, [None, "f2", "m3"], [40, 60, 50])]
    )
    total = int(seconds * 16000)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, format="FLAC") as f:
        written = 0
        while written < total:
            piece = block[: total - written]
            f.write(piece)
            written += len(piece)


def peak_rss(argv: list[str]) -> dict:
    """Run argv and return its wall time and peak RSS in MB (from the kernel's rusage of that child)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execvp(argv[0], argv)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {status}")
    return {"seconds": round(elapsed, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--ask-minutes", type=float, default=10.0)
    ap.add_argument("--out", default="benchmarks/results/long_audio.json")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        long_file, ask_file, model = tmp / "long.flac", tmp / "ask.flac", tmp / "tiny"
        make_recording(long_file, args.hours * 3600)
        make_recording(ask_file, args.ask_minutes * 60)
        subprocess.run([py, "-m", "speechpress", "init-model", "--out", str(model)], check=True, capture_output=True)
        rows = {
            "baseline: import speechpress + torch": peak_rss([py, "-c", "import torch, speechpress.cli"]),
            f"info on {args.hours:g} h FLAC": peak_rss([py, "-m", "speechpress", "info", str(long_file)]),
            f"ask on {args.ask_minutes:g} min (tiny model, no press)": peak_rss(
                [py, "-m", "speechpress", "ask", str(ask_file), "What was said?", "--model", str(model), "--max-new-tokens", "8"]
            ),
            f"ask on {args.ask_minutes:g} min (tiny model, avgpool x4)": peak_rss(
                [py, "-m", "speechpress", "ask", str(ask_file), "What was said?", "--model", str(model),
                 "--press", "avgpool", "--ratio", "4", "--max-new-tokens", "8"]
            ),
        }
    base = rows["baseline: import speechpress + torch"]["peak_rss_mb"]
    print(f"{'command':<45} {'wall s':>8} {'peak MB':>9} {'over baseline':>14}")
    for name, r in rows.items():
        print(f"{name:<45} {r['seconds']:>8.2f} {r['peak_rss_mb']:>9.1f} {r['peak_rss_mb'] / base:>13.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": f"{os.cpu_count()} cores", "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

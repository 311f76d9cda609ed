"""How fast `speechpress synth` makes audio on this machine, and how big it is (audio s per wall s, MB per hour).

Run: python benchmarks/synth_speed.py [--minutes 10] [--jobs 1 2] [--seed 0]
Each row generates the same recordings (seed, durations) into a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from speechpress.data.synth import synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="audio per row, as 5-minute recordings (default 10)")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="espeak-ng concurrency levels to compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    plan = [300.0] * max(1, round(args.minutes / 5))
    rows = []
    print(f"{os.cpu_count()} cores; {len(plan)} x 5 min recordings per row, all tasks")
    print(f"{'jobs':>4} {'audio s':>8} {'wall s':>7} {'audio s / wall s':>17} {'1 h takes':>10} {'MB / h':>7} {'examples':>9}")
    for jobs in args.jobs:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = synthesize(tmp, seed=args.seed, split="test", durations=plan, jobs=jobs)
            wall = time.perf_counter() - t0
            manifest_mb = Path(r.manifest).stat().st_size / 1e6
        speed = r.audio_seconds / wall
        row = dict(jobs=jobs, audio_s=r.audio_seconds, wall_s=round(wall, 2), speed=round(speed, 1),
                   hour_takes_s=round(3600 / speed, 1), flac_mb_per_h=round(r.bytes / 1e6 * 3600 / r.audio_seconds, 1),
                   manifest_mb_per_h=round(manifest_mb * 3600 / r.audio_seconds, 2), examples=r.examples)
        rows.append(row)
        print(f"{jobs:>4} {row['audio_s']:>8.0f} {row['wall_s']:>7.1f} {row['speed']:>17.1f} "
              f"{row['hour_takes_s']:>9.1f}s {row['flac_mb_per_h']:>7.1f} {row['examples']:>9}")
    print(f"manifest: {rows[-1]['manifest_mb_per_h']} MB per hour of audio")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

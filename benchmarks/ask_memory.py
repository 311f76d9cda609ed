"""Peak memory of ``speechpress ask`` end to end (decode, encode, press, prefill, answer) against the recording's
length: one fresh process per recording, its own ``--json`` peak (the process' peak resident set size).

The waveform, the mel and the encoder output are streamed window by window (uniform presses at the head of a chain
run as it streams), so what grows with duration is what the press keeps: the pressed tokens and the LLM's KV cache
of them. The figure to read is the growth per hour between the two longest recordings, beside the KV cache the LLM
keeps per hour at that press.

    python benchmarks/ask_memory.py [--model DIR] [--minutes 10 60 120 600] [--press avgpool:4+speechprune:4]
        [--out benchmarks/results/ask_memory.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stream_memory import write_recording


def kv_bytes_per_token(model: str | None) -> int:
    """Bytes of KV cache per token of the model's LLM (K and V of every layer, fp32 as ``ask`` runs on CPU)."""
    from speechpress.cli.common import BUNDLED_MODEL
    from speechpress.cost_model import LLMShape

    llm = json.loads((Path(model or BUNDLED_MODEL) / "config.json").read_text())["llm"]
    return LLMShape.from_config(llm).kv_bytes_per_token_element * 4


def write_summary(rows: list[dict], model: str | None, out: str) -> None:
    """The rows so far and the growth per hour between the two longest; written after every length, so a
    stopped 10 h run keeps the shorter ones."""
    from speechpress.io import atomic_write_json

    summary: dict = {"rows": rows}
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        hours = (b["minutes"] - a["minutes"]) / 60
        summary["growth_mb_per_hour"] = round((b["peak_mb"] - a["peak_mb"]) / hours, 1)
        summary["kv_mb_per_hour"] = round((b["llm_audio_tokens"] - a["llm_audio_tokens"]) / hours
                                          * kv_bytes_per_token(model) / 2**20, 2)
        print(f"growth {summary['growth_mb_per_hour']} MB per hour of audio between {a['minutes']:g} and "
              f"{b['minutes']:g} min; the LLM's KV cache of the kept tokens: {summary['kv_mb_per_hour']} MB per hour")
    atomic_write_json(out, summary)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 60, 120, 600])
    ap.add_argument("--model", default=None, help="a model directory (default: the bundled default model)")
    ap.add_argument("--press", default="avgpool:4+speechprune:4", help="the press chain (default: x16)")
    ap.add_argument("--question", default="What is said in this recording?")
    ap.add_argument("--out", default="benchmarks/results/ask_memory.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes:g}min.flac"
            write_recording(path, minutes)
            cmd = [sys.executable, "-m", "speechpress", "ask", str(path), args.question, "--press", args.press,
                   "--json", "--max-new-tokens", "8", *(["--model", args.model] if args.model else [])]
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"ask failed on {minutes:g} min: {out.stderr.strip()}")
            result = json.loads(out.stdout)
            answer = result["answers"][0]
            row = {"minutes": minutes, "press": args.press, "model": args.model or "bundled",
                   "peak_mb": round(result["peak_memory_bytes"] / 2**20, 1),
                   "encoder_tokens": answer["encoder_tokens"], "llm_audio_tokens": answer["llm_audio_tokens"],
                   "wall_seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(f"{minutes:>6g} min  peak {row['peak_mb']:>8.1f} MB  encoder tokens {row['encoder_tokens']:>7}  "
                  f"into the LLM {row['llm_audio_tokens']:>6}  {row['wall_seconds']:.0f} s", flush=True)
            path.unlink()
            write_summary(rows, args.model, args.out)


if __name__ == "__main__":
    main()

"""A 10-minute recording through tiny Qwen2-Audio and Qwen2.5-Omni-thinker checkpoints with every training-free
press: tokens into the LLM, KV entries cached, prefill time as a ratio to the uncompressed prefill in the same
run, and the process's peak RSS. The checkpoints are random (answers are gibberish); what is shown is that a
recording 20x longer than these models' 30 s window runs, compressed, through the backends.

    python benchmarks/backend_long_audio.py [--minutes 10] [--ratio 4] [--out benchmarks/results/backend_long_audio.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from press_overhead import QUESTION, recording  # noqa: E402

from speechpress.memory import peak_memory_bytes  # noqa: E402
from speechpress.model.backends.tiny import TINY_BUILDERS  # noqa: E402
from speechpress.model.speechlm import SpeechLM  # noqa: E402
from speechpress.presses import available_presses  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--ratio", type=float, default=4.0)
    ap.add_argument("--out", default="benchmarks/results/backend_long_audio.json")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    presses = ["identity"] + sorted(n for n, c in available_presses().items() if not c.trainable and n != "identity" and not c.unavailable())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.flac"
        sf.write(path, recording(args.minutes), 16000)  # decoded by the real codec on every ask
        for backend, build in TINY_BUILDERS.items():
            build(Path(tmp) / backend)
            model = SpeechLM.from_pretrained(Path(tmp) / backend)
            base = None
            for name in presses:
                ratio = None if name == "identity" else args.ratio
                start = time.perf_counter()
                answer = model.ask(str(path), QUESTION, press=name, ratio=ratio, max_new_tokens=8)[0]
                seconds = time.perf_counter() - start
                base = base or answer.prefill_seconds
                rows.append({
                    "backend": backend, "press": name, "ratio": ratio or 1, "duration_s": answer.duration,
                    "encoder_tokens": answer.encoder_tokens, "llm_audio_tokens": answer.llm_audio_tokens,
                    "cached_audio_tokens": answer.cached_audio_tokens, "prefill_s": answer.prefill_seconds,
                    "prefill_ratio_to_identity": answer.prefill_seconds / base, "ask_s": seconds,
                    "answer_tokens": len(answer.token_ids), "query_in_compression": answer.query_in_compression,
                })
    peak = peak_memory_bytes()
    print(f"{args.minutes:g} min of speech (FLAC), ratio {args.ratio:g}; process peak RSS {peak / 1e6:.0f} MB")
    print(f"{'backend':<14} {'press':<12} {'tokens in':>9} {'into LLM':>9} {'cached':>7} {'prefill s':>9} {'vs identity':>11}")
    for r in rows:
        print(f"{r['backend']:<14} {r['press']:<12} {r['encoder_tokens']:>9} {r['llm_audio_tokens']:>9} "
              f"{r['cached_audio_tokens']:>7} {r['prefill_s']:>9.2f} {r['prefill_ratio_to_identity']:>10.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"minutes": args.minutes, "ratio": args.ratio, "peak_rss_bytes": peak, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

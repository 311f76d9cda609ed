"""A sweep of several presses over the same recordings, with and without the encoder cache (``speechpress eval``
as a user runs it): wall time, encodes and the speedup, in one process, same machine, same run.

Each recording gets one question (``--questions-per-recording``), answered with a few tokens, so the figure is
about encode + compress + prefill, where the cache acts. Without the cache each press encodes every recording
again; with it the first press encodes and the rest read.

    python benchmarks/encoder_cache.py [--model DIR] [--recordings 10] [--seconds 90]
        [--press identity avgpool:4 random:4 downsample:4 segment:4 ...] [--out benchmarks/results/encoder_cache.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

PRESSES = ["identity", "avgpool:2", "avgpool:4", "avgpool:8", "random:4", "downsample:4", "segment:4",
           "knorm:4", "streamingllm:4", "avgpool:16"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    ap.add_argument("--recordings", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--press", nargs="+", default=PRESSES)
    ap.add_argument("--questions-per-recording", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/encoder_cache.json")
    args = ap.parse_args()

    import torch

    from speechpress.cli.common import bundled_model
    from speechpress.data.synth import synthesize
    from speechpress.evaluate.benchmark import resolve_benchmark
    from speechpress.evaluate.runner import Runner
    from speechpress.evaluate.sweep import sweep
    from speechpress.model.speechlm import SpeechLM

    model_dir = args.model or str(bundled_model())
    model = SpeechLM.from_pretrained(model_dir)
    figures = {"model": model_dir, "recordings": args.recordings, "seconds": args.seconds, "presses": args.press,
               "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "corpus", 9, split="test", durations=[args.seconds] * args.recordings, tasks=["speaker_count"])
        manifest = tmp / "corpus" / "bench.jsonl"
        rows, seen = [], {}
        for line in (tmp / "corpus" / "test.jsonl").read_text().splitlines():
            audio = json.loads(line)["audio"]
            seen[audio] = seen.get(audio, 0) + 1
            if seen[audio] <= args.questions_per_recording:
                rows.append(line)
        manifest.write_text("\n".join(rows) + "\n")
        bench = resolve_benchmark(str(manifest), name="bench")
        specs = sweep(args.press, [], [])
        for mode in ("no_cache", "cache"):
            runner = Runner(model_dir, tmp / mode, generation={"max_new_tokens": 4}, count_flops="none",
                            progress=False, model=model,
                            encoder_cache=(tmp / mode / "encoder-cache") if mode == "cache" else None)
            start = time.perf_counter()
            for spec in specs:
                runner.run(bench, spec)
            seconds = time.perf_counter() - start
            encodes = runner.encoded.encodes if runner.encoded else len(specs) * len(bench.examples)
            figures[mode] = {"seconds": round(seconds, 1), "encodes": encodes}
            print(f"{mode}: {seconds:.1f} s, {encodes} encodes", flush=True)
    figures["speedup"] = round(figures["no_cache"]["seconds"] / figures["cache"]["seconds"], 2)
    print(f"speedup with the cache: {figures['speedup']}x ({len(args.press)} presses, {args.recordings} x "
          f"{args.seconds:g} s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

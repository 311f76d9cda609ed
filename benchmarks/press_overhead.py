"""What each press costs on 10 minutes of real speech through the tiny model, as ratios to the identity press.

For every registered press at one ratio: the time the press itself adds (press_tokens() with the press minus
press_tokens() with identity, both including the projector), as a fraction of the identity press's whole prefill;
the whole prefill time as a ratio to identity's; and, for trainable presses, parameters and FLOPs of one forward
(speechpress.presses.cost.press_cost, FlopCounterMode). Each timing is the median of --repeats runs.

    python benchmarks/press_overhead.py [--minutes 10] [--ratio 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from speechpress.data.tts import Voice, speak
from speechpress.model.config import TINY
from speechpress.model.speechlm import SpeechLM
from speechpress.presses import available_presses
from speechpress.presses.cost import press_cost

QUESTION = "When does the committee meet again?"


def recording(minutes: float) -> np.ndarray:
    lines = [
        ("The committee will meet again on Thursday to review the shipping schedule.", Voice("en-us", None, 165, 45)),
        ("Our guest today is an engineer who builds bridges in Norway.", Voice("en-gb", "f2", 175, 60)),
        ("Revenue grew by twelve percent in the third quarter.", Voice("en-us", "m3", 150, 50)),
    ]
    block = np.concatenate([np.concatenate([speak(t, v), np.zeros(4000, np.float32)]) for t, v in lines])
    n = int(minutes * 60 * 16000)
    return np.resize(block, n).astype(np.float32)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--ratio", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/press_overhead.json")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    model = SpeechLM.from_config(TINY)
    audio = model.as_audio(recording(args.minutes))
    query = model.embed_ids(model.tokenizer(QUESTION, add_special_tokens=False)["input_ids"])
    with torch.inference_mode():
        tokens = model.encode(audio)
        base_compress = median_time(lambda: model.press_tokens(tokens, model.press_chain("identity"), query), args.repeats)
        base_prefill = median_time(lambda: model.prefill(audio, "identity"), args.repeats)
    rows = []
    for name, cls in available_presses().items():
        if name == "identity" or cls.unavailable():  # kvpress without a compatible install
            continue
        kwargs = {"ratio": args.ratio}
        chain = model.press_chain(name, **kwargs)
        press = chain[0]
        with torch.inference_mode():
            compress_s = median_time(lambda: model.press_tokens(tokens, chain, query), args.repeats)
            prefill_s = median_time(
                lambda: model.prefill(audio, chain, question=QUESTION if cls.query_aware else None), args.repeats
            )
            out = model.press_tokens(tokens, chain, query)
        row = {
            "press": name,
            "space": cls.space,
            "trainable": cls.trainable,
            "tokens_in": int(tokens.lengths[0]),
            "tokens_out": press.output_length(int(tokens.lengths[0]), audio.duration) if cls.space == "kv" else int(out.lengths[0]),
            "press_added_fraction_of_identity_prefill": (compress_s - base_compress) / base_prefill,
            "prefill_ratio_to_identity": prefill_s / base_prefill,
        }
        if cls.trainable:
            row["parameters"] = sum(p.numel() for p in press.parameters())
            if cls.space != "kv":
                row["gflops_per_forward"] = press_cost(press, int(tokens.lengths[0])).flops / 1e9
        rows.append(row)
    print(f"{args.minutes:g} min of speech, {int(tokens.lengths[0])} tokens, ratio {args.ratio:g}; identity prefill {base_prefill:.2f} s")
    print(f"{'press':<12} {'tokens out':>10} {'press adds':>11} {'prefill vs id':>14} {'params':>9} {'GFLOPs':>8}")
    for r in rows:
        print(
            f"{r['press']:<12} {r['tokens_out']:>10} {100 * r['press_added_fraction_of_identity_prefill']:>10.1f}% "
            f"{r['prefill_ratio_to_identity']:>13.2f}x {r.get('parameters', ''):>9} "
            f"{r.get('gflops_per_forward', float('nan')):>8.2f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"minutes": args.minutes, "ratio": args.ratio, "identity_prefill_s": base_prefill, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The pretrained bases: first load (conversion into an empty cache) against a cached load, and what a composed
model (Whisper-base encoder + SmolLM2-135M-Instruct) pays per 30 s of audio, encoder and LLM prefill separately.

    python benchmarks/pretrained_parts.py [--repeats 3] [--out benchmarks/results/pretrained_parts.json]

Ratios against a baseline measured in the same run are the figures to compare (the machine is shared); the
seconds are reported beside them. The cached load includes the sha256 of the source, which every use checks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeats=1):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pretrained_parts.json"))
    args = ap.parse_args()
    import torch

    from speechpress.model.sources import resolve_base
    from speechpress.model.speechlm import SpeechLM

    result = {"torch_threads": torch.get_num_threads(), "parts": {}}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SPEECHPRESS_CACHE"] = cache
        for name in ("whisper-base", "smollm2-135m-instruct"):
            first, part = timed(lambda: resolve_base(name))
            cached, _ = timed(lambda: resolve_base(name), args.repeats)
            result["parts"][name] = {"format": part.format, "first_load_s": round(first, 2), "cached_load_s": round(cached, 3),
                                     "first_over_cached": round(first / cached, 1)}
            print(name, result["parts"][name], file=sys.stderr)
        build, model = timed(lambda: SpeechLM.compose("whisper-base", "smollm2-135m-instruct"))
        result["compose_from_cache_s"] = round(build, 2)

    from speechpress.features import iter_feature_windows

    sys.path.insert(0, str(REPO / "tests"))
    from helpers import speech

    samples = speech(30.0)
    window = next(iter(iter_feature_windows(samples, model.config.num_mel_bins, 30.0, 16000, 1)))[0]
    feats = window.features[None]
    prefix_ids, _ = model.prompt_ids(None)
    with torch.inference_mode():
        enc_s, tokens = timed(lambda: model.encode_windows(feats, [window.valid_frames])[0], args.repeats)
        audio = model.projector(tokens)[None]
        prefix = model.embed_ids(prefix_ids)
        inputs = torch.cat([prefix, audio], dim=1)
        llm_s, _ = timed(lambda: model.llm.base_model(inputs_embeds=inputs, use_cache=True), args.repeats)
    result["per_30s_window"] = {
        "audio_tokens": int(tokens.shape[0]),
        "encoder_s": round(enc_s, 3),
        "llm_prefill_s": round(llm_s, 3),
        "llm_over_encoder": round(llm_s / enc_s, 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

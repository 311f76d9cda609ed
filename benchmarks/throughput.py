"""How close speechpress' own inference path runs to this machine's limit, and how many times faster than real
time it processes long audio, all in one process (ratios against baselines measured in the same run).

1. The limit: fp32 GEMM throughput, a 2048^3 matmul (median of 5).
2. Encoder: FLOPs per second of ``SpeechLM.encode`` (windowing, log-mel, encoder, pooling) on W windows, and of
   the bare transformers encoder on the same log-mel batch, each divided by the GEMM rate.
3. LLM prefill of T audio tokens: ``SpeechLM.prefill`` (prompt, projector, the identity press's prefill) from
   encoded tokens, and the bare ``llm(inputs_embeds=...)`` forward, each divided by the GEMM rate.
4. x-real-time of encode + compress + prefill (``SpeechLM.prefill`` on a file, streamed) per press and
   duration; a press whose output does not fit the LLM's positions at that duration is reported as such.

FLOPs are the analytic ones of ``speechpress.cost_model`` (linear layers, and attention counted causal for the
LLM, dense for the encoder), which ``tests/test_profile_measure.py`` checks against counted FLOPs.

    python benchmarks/throughput.py [--model DIR] [--windows 4] [--tokens 1000] [--minutes 5 60]
        [--press identity avgpool:4 speechprune:4 avgpool:16] [--int8-encoder] [--out benchmarks/results/throughput.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from press_overhead import median_time as timed  # noqa: E402
from stream_memory import write_recording  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    ap.add_argument("--windows", type=int, default=4, help="30 s windows in the encoder measurement")
    ap.add_argument("--tokens", type=int, default=1000, help="audio tokens in the prefill measurement")
    ap.add_argument("--minutes", type=float, nargs="+", default=[5, 60])
    ap.add_argument("--press", nargs="+", default=["identity", "avgpool:4", "speechprune:4", "avgpool:16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--int8-encoder", action="store_true", help="also measure a dynamic int8 encoder (CPU)")
    ap.add_argument("--out", default="benchmarks/results/throughput.json")
    args = ap.parse_args()

    import torch

    from speechpress.cli.common import bundled_model
    from speechpress.cost_model import EncoderShape, LLMShape, llm_prefill_flops
    from speechpress.errors import ConfigError
    from speechpress.features import iter_feature_windows
    from speechpress.model.speechlm import SpeechLM

    torch.manual_seed(0)
    model_dir = args.model or str(bundled_model())
    model = SpeechLM.from_pretrained(model_dir).eval()
    cfg = model.config
    out = {"model": model_dir, "threads": torch.get_num_threads(), "torch": torch.__version__}

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    gemm = 2 * 2048**3 / timed(lambda: torch.mm(a, b), 5)
    out["gemm_gflops"] = round(gemm / 1e9, 1)
    print(f"fp32 GEMM 2048^3: {gemm / 1e9:.1f} GFLOP/s ({out['threads']} threads)", flush=True)

    # ---- encoder
    seconds = args.windows * cfg.window_seconds
    samples = (0.05 * torch.randn(int(seconds * cfg.sample_rate))).numpy()
    enc_flops = EncoderShape.from_config(cfg.encoder).flops_per_window * args.windows
    windows = [w for batch in iter_feature_windows(samples, cfg.num_mel_bins, cfg.window_seconds, cfg.sample_rate, 8) for w in batch]
    feats = torch.stack([w.features for w in windows])
    with torch.inference_mode():
        model.encode(samples)  # warm-up
        ours = timed(lambda: model.encode(samples), args.repeats)
        bare = timed(lambda: model.encoder(feats), args.repeats)
    out["encoder"] = {"windows": args.windows, "gflops": round(enc_flops / 1e9, 1),
                      "speechpress_s": round(ours, 3), "bare_s": round(bare, 3),
                      "speechpress_efficiency": round(enc_flops / ours / gemm, 3),
                      "bare_efficiency": round(enc_flops / bare / gemm, 3)}
    print(f"encoder, {args.windows} windows: speechpress {ours:.2f} s ({out['encoder']['speechpress_efficiency']:.0%} of GEMM), "
          f"bare {bare:.2f} s ({out['encoder']['bare_efficiency']:.0%})", flush=True)

    # ---- LLM prefill
    shape = LLMShape.from_config(cfg.llm)
    T = args.tokens
    audio_s = T / cfg.tokens_per_second
    with torch.inference_mode():
        encoded = model.encode((0.05 * torch.randn(int(audio_s * cfg.sample_rate))).numpy())
        prefix = len(model.prompt_ids(None)[0])
        n = int(encoded.lengths[0]) + prefix
        embeds = torch.randn(1, n, shape.hidden) * 0.02
        llm_flops = llm_prefill_flops(shape, [(n, 0)], "causal", logits=1)["total"]
        model.prefill(None, "identity", encoded=encoded)  # warm-up
        ours = timed(lambda: model.prefill(None, "identity", encoded=encoded), args.repeats)
        base = model.llm.model if hasattr(model.llm, "model") else model.llm
        bare = timed(lambda: base(inputs_embeds=embeds, use_cache=True), args.repeats)
    out["llm_prefill"] = {"tokens": n, "gflops": round(llm_flops / 1e9, 1),
                          "speechpress_s": round(ours, 3), "bare_s": round(bare, 3),
                          "speechpress_efficiency": round(llm_flops / ours / gemm, 3),
                          "bare_efficiency": round(llm_flops / bare / gemm, 3)}
    print(f"LLM prefill, {n} tokens: speechpress {ours:.2f} s ({out['llm_prefill']['speechpress_efficiency']:.0%} of GEMM), "
          f"bare {bare:.2f} s ({out['llm_prefill']['bare_efficiency']:.0%})", flush=True)

    # ---- x-real-time, per press and duration
    out["x_real_time"] = []
    variants = [("fp32", model)]
    if args.int8_encoder:
        q = SpeechLM.from_pretrained(model_dir).eval().quantize_encoder_int8()
        variants.append(("int8-encoder", q))
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes:g}min.flac"
            write_recording(path, minutes)
            for label, m in variants:
                for press in args.press:
                    row = {"minutes": minutes, "press": press, "encoder": label}
                    question = "What is the budget of the project?"
                    try:
                        with torch.inference_mode():
                            start = time.perf_counter()
                            ctx = m.prefill(str(path), press, question=question)
                            row["seconds"] = round(time.perf_counter() - start, 2)
                        row["x_real_time"] = round(minutes * 60 / row["seconds"], 1)
                        row["llm_audio_tokens"] = ctx.llm_audio_tokens
                        del ctx
                    except ConfigError as err:
                        row["skipped"] = str(err)
                    out["x_real_time"].append(row)
                    shown = f"{row['x_real_time']}x ({row['seconds']} s)" if "seconds" in row else "does not fit the LLM's positions"
                    print(f"{minutes:g} min, {press}, {label} encoder: {shown}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Peak memory and KV bytes of SST streaming prefill against a plain full prefill, in the same run.

Each (duration, method) runs in a fresh subprocess and reports its own ``resource.getrusage`` max RSS: torch's
CPU tensors come from malloc, not Python's allocator, so tracemalloc cannot see them, and torch.profiler's
memory timeline is itself heavy at 90k tokens; the high-water mark of a fresh process catches every byte the
prefill really touched (allocator caches and temporaries included) and no configuration inherits another's
peak. Besides the absolute peak we print the growth of the peak during prefill (peak after - peak before, the
model and the input embeddings already allocated), and the bytes the KV cache holds at the end.

The audio tokens are random LLM-space embeddings (content does not change memory); the LLM is a tiny Qwen2
built from a config in code. A full prefill of long audio is quadratic on CPU: configurations above
``--full-max-tokens`` are skipped with a message and their KV bytes computed analytically.

    python benchmarks/sst_memory.py                      # 5, 20, 60 minutes; SST x8 vs full
    python benchmarks/sst_memory.py --minutes 5 --alpha 4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def build_llm(args):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=1024,
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=131072,
        rope_theta=1_000_000.0,
    )
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen2ForCausalLM(cfg).eval()


def kv_bytes_per_token(args) -> int:
    head_dim = args.hidden // args.heads
    return args.layers * 2 * args.kv_heads * head_dim * 4  # keys + values, fp32


def child(args) -> None:
    """One configuration in this fresh process; prints one JSON line."""
    import torch

    from speechpress.presses.summary_tokens import SummaryTokenPress

    torch.set_num_threads(args.threads)
    llm = build_llm(args)
    prefix = torch.randn(1, args.prefix, args.hidden) * 0.02
    audio = torch.randn(1, args.tokens, args.hidden) * 0.02
    press = SummaryTokenPress(ratio=args.alpha, dim=args.hidden, interval_tokens=args.interval)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    start = time.perf_counter()
    with torch.no_grad():
        if args.mode == "sst":
            state = press.prefill(llm, prefix, audio)
            cache, kept = state.cache, state.kept_tokens
        else:
            out = llm.get_decoder()(inputs_embeds=torch.cat([prefix, audio], dim=1), use_cache=True)
            cache = out.past_key_values
            kept = cache.get_seq_length()
    seconds = time.perf_counter() - start
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kv = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    print(
        json.dumps(
            dict(
                mode=args.mode,
                tokens=args.tokens,
                kept=int(kept),
                kv_bytes=int(kv),
                peak_rss=int(peak_after),
                prefill_peak_growth=int(peak_after - peak_before),
                seconds=round(seconds, 2),
            )
        )
    )


def run_config(args, mode: str, tokens: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--tokens", str(tokens)]
    for key in ("alpha", "interval", "hidden", "layers", "heads", "kv_heads", "prefix", "threads"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise SystemExit(f"{mode} prefill of {tokens} tokens failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(n: float) -> str:
    return f"{n / 2**20:8.1f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[5, 20, 60])
    ap.add_argument("--tokens-per-second", type=float, default=25.0)
    ap.add_argument("--alpha", type=int, default=8)
    ap.add_argument("--interval", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--prefix", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (the machine is shared)")
    ap.add_argument("--full-max-tokens", type=int, default=30000, help="skip full prefills longer than this")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=["sst", "full"], help=argparse.SUPPRESS)
    ap.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return

    per_token = kv_bytes_per_token(args)
    print(
        f"tiny Qwen2: hidden {args.hidden}, {args.layers} layers, {args.heads} heads / {args.kv_heads} KV heads, fp32, "
        f"sdpa; {per_token} KV bytes/token; prefix {args.prefix}; SST alpha {args.alpha}, interval {args.interval}; "
        f"{args.threads} thread(s)"
    )
    print("peak = getrusage max RSS of a fresh subprocess per row; growth = peak during prefill - peak before it")
    header = f"{'audio':>7} {'tokens':>7} {'method':>6} {'kept':>7} {'KV MiB':>8} {'peak MiB':>8} {'growth MiB':>10} {'s':>7}"
    print(header)
    print("-" * len(header))
    rows = []
    for minutes in args.minutes:
        tokens = round(minutes * 60 * args.tokens_per_second)
        pair = {}
        for mode in ("full", "sst"):
            if mode == "full" and tokens > args.full_max_tokens:
                kept = args.prefix + tokens
                pair[mode] = dict(mode=mode, tokens=tokens, kept=kept, kv_bytes=kept * per_token, skipped=True)
                print(
                    f"{minutes:5.0f}m {tokens:7d} {mode:>6} {kept:7d} {mib(kept * per_token)} {'skipped':>8} {'':>10} {'':>7}"
                    f"  <- full prefill above --full-max-tokens {args.full_max_tokens} (quadratic on CPU): "
                    "KV bytes analytic"
                )
                continue
            r = run_config(args, mode, tokens)
            pair[mode] = r
            print(
                f"{minutes:5.0f}m {tokens:7d} {mode:>6} {r['kept']:7d} {mib(r['kv_bytes'])} {mib(r['peak_rss'])} "
                f"{mib(r['prefill_peak_growth']):>10} {r['seconds']:7.1f}",
                flush=True,
            )
        full, sst = pair["full"], pair["sst"]
        audio_kv = (full["kept"] - args.prefix) / (sst["kept"] - args.prefix)
        line = f"        KV full/SST = {full['kv_bytes'] / sst['kv_bytes']:.2f}x (audio part alone {audio_kv:.2f}x)"
        if not full.get("skipped"):
            line += (
                f", peak full/SST = {full['peak_rss'] / sst['peak_rss']:.2f}x, "
                f"prefill growth full/SST = {full['prefill_peak_growth'] / max(1, sst['prefill_peak_growth']):.2f}x"
            )
        print(line)
        rows.append(pair)


if __name__ == "__main__":
    main()

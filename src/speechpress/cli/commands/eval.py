"""`speechpress eval`: a benchmark x press x ratio sweep, one resumable output folder per run (docs/eval.md)."""

from __future__ import annotations

from pathlib import Path

from speechpress.cli.common import INT8_ENCODER_HELP, add_generation_args, check_int8_device, generation_kwargs, press_options
from speechpress.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on a benchmark under presses x ratios (resumable, shardable)",
        description=(
            "Answer every question of a benchmark under each press and ratio, one output folder per run "
            "(OUT/<benchmark>/<model>/<press>/: config.json, predictions.jsonl, metrics.json). Questions on the "
            "same audio share one prefill. A rerun skips finished rows and runs; a crash loses no written row. "
            "Under torchrun / accelerate launch, audio groups are sharded across ranks (RANK, WORLD_SIZE) and "
            "merged when all are done. See docs/eval.md."
        ),
        epilog="example: speechpress eval --model tiny --benchmark corpus/test.jsonl --press identity avgpool "
        "--ratio 2 4 --limit 20 --out runs",
    )
    p.add_argument("--model", required=True, help="model directory, hub id, or a bundled model by name (speechpress-smol, speechpress-tiny)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available; LOCAL_RANK picks the GPU under torchrun)")
    p.add_argument("--int8-encoder", action="store_true",
                   help=INT8_ENCODER_HELP + "; its runs go to OUT/<benchmark>/<model>+int8-encoder/, beside the fp32 ones")
    p.add_argument("--benchmark", required=True, metavar="B",
                   help="a manifest or benchmark file, a `speechpress synth` corpus folder (with --split) or split folder "
                   "(corpus/test), or NAME:PATH with NAME one of manifest, longspeech, audiomarathon, spiral, hf "
                   "(hf:FOLDER_OR_HUB_ID#COLUMN_SPEC, a Hugging Face dataset)")
    p.add_argument("--task", default=None, help="keep only this task: a manifest task name, a LongSpeech task folder (ASR, summary, ...) "
                   "or an AudioMarathon task code (SGR, ...)")
    p.add_argument("--split", default="test", help="split of a corpus folder or LongSpeech root (default: test)")
    p.add_argument("--name", default=None, help="benchmark name used for the output folder (default: from the path)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed benchmark rows (counted on stderr) instead of failing")
    g = p.add_argument_group("compression sweep")
    g.add_argument("--press", nargs="+", default=["identity"], metavar="P",
                   help="one or more presses or chains: identity avgpool hfq@1.67 avgpool:2+sst:8 (default: identity); "
                   "a bare name runs at every --ratio / --tokens-per-second")
    g.add_argument("--ratio", type=float, nargs="+", default=[], metavar="K", help="compression factors k for bare press names")
    g.add_argument("--tokens-per-second", type=float, nargs="+", default=[], metavar="T",
                   help="tokens-per-second targets for bare press names")
    g.add_argument("--press-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a press setting, repeatable, e.g. interval_tokens=128 for sst")
    add_generation_args(p)
    p.add_argument("--choice-scoring", default="generate", choices=("generate", "loglik"),
                   help="how multiple-choice questions are answered: generate (default) writes a letter after the "
                   "lettered options; loglik asks the bare question and picks the option whose words the model finds "
                   "likeliest (sum of log-probabilities, as lm-evaluation-harness scores multiple choice), which "
                   "measures what a small LLM knows even when it cannot write the letter; its runs go to "
                   "OUT/<benchmark>/<model>+loglik/")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N questions of the benchmark")
    p.add_argument("--out", default="runs", help="output root (default: runs)")
    p.add_argument("--count-flops", default="first", choices=("first", "all", "none"),
                   help="count prefill FLOPs with FlopCounterMode on an extra, untimed prefill of the first recording "
                   "of each run (first, default), of every recording (all), or not at all")
    g = p.add_argument_group("encoder cache")
    g.add_argument("--encoder-cache", default=None, metavar="DIR",
                   help="where encoder outputs are kept, so each recording is encoded once for the whole sweep and "
                   "for reruns (default: OUT/encoder-cache; one subfolder per encoder fingerprint)")
    g.add_argument("--encoder-cache-gb", type=float, default=8.0, metavar="GB",
                   help="bound on the cache folder; the least recently used entries go first (default: 8; "
                   "an hour of audio at 25 tokens/s, width 1,024, fp32 is about 0.37 GB)")
    g.add_argument("--no-encoder-cache", action="store_true",
                   help="encode each recording again for every press (once per audio group)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from speechpress.io import output_dir

    with output_dir(args.out):  # checked before the model or benchmark is loaded; a failed write is one error line
        return _run(args)


def _run(args) -> int:
    from speechpress.evaluate.benchmark import resolve_benchmark
    from speechpress.evaluate.distributed import dist_from_env
    from speechpress.evaluate.runner import Runner
    from speechpress.evaluate.sweep import sweep
    from speechpress.model.speechlm import default_device

    gen = generation_kwargs(args)
    options = press_options(args)
    if args.int8_encoder:
        check_int8_device(args.device or default_device())
    specs = sweep(args.press, args.ratio, args.tokens_per_second)
    bench = resolve_benchmark(args.benchmark, task=args.task, split=args.split, name=args.name, skip_bad=args.skip_bad)
    dist = dist_from_env()
    if args.encoder_cache_gb <= 0:
        raise ConfigError(f"--encoder-cache-gb must be > 0, got {args.encoder_cache_gb}")
    cache_dir = None if args.no_encoder_cache else (args.encoder_cache or str(Path(args.out) / "encoder-cache"))
    runner = Runner(args.model, args.out, device=args.device, generation=gen, press_options=options,
                    count_flops=args.count_flops, progress=not args.no_progress, dist=dist,
                    encoder_cache=cache_dir, encoder_cache_bytes=int(args.encoder_cache_gb * 2**30),
                    int8_encoder=args.int8_encoder, choice_scoring=args.choice_scoring)
    try:
        results = [runner.run(bench, spec, limit=args.limit) for spec in specs]
    finally:
        dist.close()
    if dist.rank == 0:
        for r in results:
            print(f"{r.label}: {summary(r)} -> {r.run_dir}", flush=True)
        if runner.encoded is not None:
            cache = runner.encoded.cache
            print(f"encoder cache {cache.dir}: {runner.encoded.encodes} encoded, {cache.hits} read", flush=True)
    return 0


def summary(result) -> str:
    if result.skipped:
        state = f"{result.rows} rows, finished earlier (skipped)"
    elif not result.complete:
        return f"{result.new_rows} new rows; waiting for other ranks' shards before merging"
    else:
        state = f"{result.rows} rows ({result.new_rows} new)"
    overall = result.metrics.get("metrics", {}).get("overall", {})
    scores = ", ".join(f"{m}={v['pooled']['score']:.3f}" for m, v in sorted(overall.items()))
    cost = result.metrics.get("cost", {})
    extra = ""
    if cost:
        extra = (f"; {cost['audio_tokens_per_second']:.2f} tok/s, KV {cost['kv_bytes_mean'] / 2**20:.2f} MiB, "
                 f"prefill {cost['prefill_seconds_mean']:.2f} s")
    return f"{state}{'; ' + scores if scores else ''}{extra}"

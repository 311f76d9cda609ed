"""`speechpress report`: report.md and plots from a folder of `speechpress eval` runs (docs/eval.md)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="markdown table and plots (accuracy vs compression and KV bytes, cost vs duration) from eval runs",
        description=(
            "Read every finished run under RUNS_DIR (metrics.json + predictions.jsonl) and write report.md (each "
            "score with its bootstrap 95% interval over rows), accuracy_vs_compression.png (one line per press), "
            "accuracy_vs_kv.png (the same against KV cache bytes per minute of audio), "
            "timeline_<benchmark>.png (for a few questions whose answer lies in known seconds: which seconds of "
            "audio each run's tokens covered) and cost_vs_duration.png (KV cache, peak memory and "
            "prefill FLOPs against recording length, from the runs and from `speechpress profile --json` files "
            "given with --profile or named RUNS_DIR/profile*.json)."
        ),
        epilog="example: speechpress report runs --profile runs/profile-tiny.json",
    )
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="the --out folder of `speechpress eval`")
    p.add_argument("--profile", nargs="+", default=[], metavar="JSON", help="`speechpress profile --json` output file(s)")
    p.add_argument("--out", default=None, help="where to write (default: RUNS_DIR)")
    p.set_defaults(func=run)


def run(args) -> int:
    from speechpress.io import output_dir

    with output_dir(args.out or args.runs_dir):  # checked before any run is read; a failed write is one error line
        return _run(args)


def _run(args) -> int:
    from speechpress.evaluate.report import write_report

    written = write_report(args.runs_dir, args.out, args.profile)
    files = ", ".join(str(p) for k, v in written.items() if k != "runs" for p in (v if isinstance(v, list) else [v]))
    print(f"{written['runs']} run(s) -> {files}")
    return 0

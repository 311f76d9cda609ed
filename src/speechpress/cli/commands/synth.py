"""`speechpress synth`: make the synthetic long-form corpus and its benchmark questions."""

from __future__ import annotations


def register(sub) -> None:
    from speechpress.data.recording import ALL_GENRES, GENRES
    from speechpress.data.schema import SYNTH_TASKS
    from speechpress.data.vocab import SPLITS

    p = sub.add_parser(
        "synth",
        help="generate a spoken long-form corpus + benchmark questions (espeak-ng, deterministic)",
        description="Generate multi-speaker recordings (FLAC, 16 kHz) and a JSONL manifest of questions about them "
        "(see docs/data.md). The same seed gives identical files; a rerun skips finished recordings.",
    )
    p.add_argument("--out", required=True, help="output folder (manifest OUT/<split>.jsonl, audio OUT/<split>/)")
    p.add_argument("--seed", type=int, required=True, help="everything follows from this number")
    p.add_argument("--split", default="train", choices=SPLITS, help="which disjoint pool of words and voices to use")
    p.add_argument("--durations", nargs="+", default=["30", "90", "300"], metavar="D",
                   help="recording lengths: seconds or with s/m/h, e.g. 30 90 5m 10m 30m 1h (default: 30 90 300)")
    p.add_argument("--hours", type=float, default=None,
                   help="cycle through --durations until this much audio is planned (default: one of each)")
    p.add_argument("--tasks", nargs="+", default=None, choices=SYNTH_TASKS, metavar="TASK",
                   help=f"questions to write (default: all): {', '.join(SYNTH_TASKS)}")
    p.add_argument("--genres", nargs="+", default=None, choices=ALL_GENRES, metavar="GENRE",
                   help=f"draw each recording's genre from these (default: {' '.join(GENRES)}). 'dictation' is "
                   "alignment data: speakers read lists of names, places and numbers, facts and sentences of the "
                   "other genres, which no template predicts; 'lexicon' is lists of the LLM's single-token words "
                   "(10,000, split by hash; none a name or place of the corpus); give each its own --out folder")
    p.add_argument("--jobs", type=int, default=None, help="concurrent espeak-ng processes (default: cores, max 4)")
    p.set_defaults(func=run)


def run(args) -> int:
    from speechpress.io import output_dir

    with output_dir(args.out):  # checked before anything is rendered; a failed write is one error line
        return _run(args)


def _run(args) -> int:
    from speechpress.data.synth import parse_duration, synthesize
    from speechpress.errors import ConfigError

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    durations = [parse_duration(d) for d in args.durations]
    report = synthesize(args.out, args.seed, split=args.split, durations=durations, hours=args.hours,
                        tasks=args.tasks, jobs=args.jobs, progress=True, genres=args.genres)
    print(f"{report.recordings} recordings ({report.reused} already there), {report.audio_seconds / 3600:.2f} h of "
          f"audio, {report.bytes / 1e6:.1f} MB, {report.examples} examples -> {report.manifest}")
    return 0

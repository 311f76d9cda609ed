"""`speechpress check-data`: load a dataset file the way evaluation will, and say what is in it or what is wrong."""

from __future__ import annotations

import sys
from collections import Counter


def register(sub) -> None:
    from speechpress.data.loaders import FORMATS

    p = sub.add_parser(
        "check-data",
        help="validate a manifest or benchmark file (manifest, LongSpeech, AudioMarathon, SPIRAL-style)",
        description="Read every row, check fields, tasks and audio (exists, offsets inside it) and count examples "
        "per task. A bad row is an error naming the file and line, unless --skip-bad.",
    )
    p.add_argument("path", help="manifest / benchmark file, a LongSpeech root folder, or (--format hf) a Hugging "
                   "Face dataset folder, file or hub id with an optional #COLUMN_SPEC")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    p.add_argument("--task", default=None, help="LongSpeech task folder (e.g. ASR) or AudioMarathon code (e.g. SGR)")
    p.add_argument("--split", default="test", help="LongSpeech split file name (default: test)")
    p.add_argument("--audio-root", default=None, help="folder the audio paths are relative to (format default)")
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows and report how many instead of failing")
    p.set_defaults(func=run)


def run(args) -> int:
    from speechpress.data.loaders import load_examples

    examples = load_examples(args.path, format=args.format, task=args.task, split=args.split,
                             audio_root=args.audio_root, skip_bad=args.skip_bad)
    print(f"{len(examples)} examples, {len({ex.audio for ex in examples})} audio files")
    for task, n in sorted(Counter(ex.task for ex in examples).items()):
        print(f"  {task:<22} {n}")
    if examples.skipped:
        print(f"skipped {examples.skipped} bad row(s); first: {examples.errors[0]}", file=sys.stderr)
    return 0

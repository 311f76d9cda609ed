"""A transcription benchmark from a generated corpus: one asr_short row per utterance (introductions left out, as
their words are the speaker's own name and the topic), the first N in recording order.

    python scripts/utterance_manifest.py corpus-dictation/test corpus-dictation/test-utts60.jsonl --rows 60

The manifest is written beside the split folder (rows name their audio relative to it, as synth's do).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechpress.io import atomic_write_text


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("split_dir", help="a split folder written by speechpress synth (FLAC + JSON sidecars)")
    ap.add_argument("out", help="the manifest to write (in the split folder's parent)")
    ap.add_argument("--rows", type=int, default=60)
    args = ap.parse_args()
    split_dir, out = Path(args.split_dir), Path(args.out)
    if out.resolve().parent != split_dir.resolve().parent:
        fail(f"{out}: write the manifest beside {split_dir} (its rows name audio relative to it)")
    rows = []
    for side in sorted(split_dir.glob("*.json")):
        rec = json.loads(side.read_text(encoding="utf-8"))
        for k, u in enumerate(rec["utterances"]):
            if u["kind"] == "intro":
                continue
            rows.append(dict(id=f"{rec['id']}-utt-{k}", audio=f"{split_dir.name}/{rec['audio']}", offset=u["start"],
                             duration=round(u["end"] - u["start"], 3), task="asr_short", prompt="Transcribe the speech.",
                             choices=None, answer=u["text"], metric="wer",
                             metadata=dict(recording=rec["id"], seed=rec["seed"], split=rec["split"], genre=rec["genre"],
                                           generator_version=rec["version"], speaker=u["speaker"])))
    if not rows:
        fail(f"{split_dir}: no recordings (JSON sidecars) found")
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[: args.rows]))
    print(f"{out}: {min(len(rows), args.rows)} of {len(rows)} utterances")


if __name__ == "__main__":
    main()

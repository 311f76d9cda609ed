"""Transcribe each utterance of a manifest two ways: cut from its whole recording's encoding (what a long recording
gives the LLM, and what training with data.slice_recordings sees) and encoded alone (what `speechpress transcribe`
and eval's utterance rows do). Whisper's encoding of the same audio differs between the two, so a model can hear
an utterance in context and not alone, or the reverse.

    python benchmarks/utterance_context.py --model runs/speechpress-smol/phase4/model \\
        --manifest corpus-dictation/test-utts60.jsonl [--rows 30] [--out FILE.json]

Rows: asr_short rows with offset and duration (e.g. from scripts/utterance_manifest.py). Greedy, 48 new tokens.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model directory or a bundled name")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--show", type=int, default=3, help="print this many transcripts beside the reference")
    ap.add_argument("--out", help="write the figures and transcripts as JSON here")
    args = ap.parse_args()
    import soundfile as sf
    import torch
    from tqdm import tqdm

    from speechpress.io import atomic_write_json
    from speechpress.evaluate.metrics import wer
    from speechpress.model.speechlm import SpeechLM
    from speechpress.presses.base import AudioTokens

    manifest = Path(args.manifest)
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["task"] == "asr_short"][: args.rows]
    if not rows:
        raise SystemExit(f"{manifest}: no asr_short rows")
    model = SpeechLM.from_pretrained(args.model).eval()
    recording: dict[Path, tuple] = {}  # rows come in recording order: keep one recording's samples and encoding
    out = []
    start = time.perf_counter()
    for row in tqdm(rows, desc="utterances", unit="utt"):
        path = manifest.parent / row["audio"]
        with torch.inference_mode():
            if path not in recording:
                samples, rate = sf.read(str(path), dtype="float32")
                recording = {path: (samples, rate, model.encode(samples))}
            samples, rate, whole = recording[path]
            tokens = AudioTokens.from_rows([whole.stretch(row["offset"], row["duration"])])
            tokens.duration = row["duration"]
            in_context = model.answer(model.prefill(None, encoded=tokens), row["prompt"], max_new_tokens=48).text.strip()
            first = int(round(row["offset"] * rate))
            clip = samples[first: first + int(round(row["duration"] * rate))]
            alone = model.ask(clip, row["prompt"], max_new_tokens=48)[0].text.strip()
        out.append(dict(id=row["id"], reference=row["answer"], in_context=in_context, alone=alone))
    refs = [r["reference"] for r in out]
    result = {"model": args.model, "manifest": str(manifest), "utterances": len(out),
              "wer_in_context": round(wer([r["in_context"] for r in out], refs)["wer"], 4),
              "wer_alone": round(wer([r["alone"] for r in out], refs)["wer"], 4),
              "seconds": round(time.perf_counter() - start, 1)}
    for r in out[: args.show]:
        print(f"  ref:        {r['reference']}\n  in context: {r['in_context']}\n  alone:      {r['alone']}")
    print(json.dumps(result))
    if args.out:
        atomic_write_json(args.out, dict(result, transcripts=out))


if __name__ == "__main__":
    main()

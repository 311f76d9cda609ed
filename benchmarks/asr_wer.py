"""Greedy WER of a model (or a training checkpoint) on short utterances of unseen voices, beside the encoder's
ceiling: the full Whisper-base model's own greedy transcript of the same utterances.

    python benchmarks/asr_wer.py --model runs/speechpress-smol/phase1/model [--rows 30]
    python benchmarks/asr_wer.py --init runs/speechpress-smol/init --checkpoint runs/speechpress-smol/phase1/checkpoints/step-0000300
    python benchmarks/asr_wer.py --whisper            # Whisper-base alone (the ceiling)

The utterances are the first ``--rows`` asr_short rows of ``corpus/test.jsonl`` (seed 9, voices and words never
used in training); each is cut from its recording and run on its own, as `speechpress transcribe` would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def utterances(manifest: Path, rows: int):
    import soundfile as sf

    out = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["task"] != "asr_short":
            continue
        path = manifest.parent / row["audio"]
        with sf.SoundFile(path) as f:
            f.seek(int(row["offset"] * f.samplerate))
            samples = f.read(int(row["duration"] * f.samplerate), dtype="float32")
        out.append((row, samples))
        if len(out) == rows:
            break
    return out


def load_model(args):
    from speechpress.model.speechlm import SpeechLM

    if args.model:
        return SpeechLM.from_pretrained(args.model)
    from safetensors.torch import load_file

    model = SpeechLM.from_pretrained(args.init)
    weights = load_file(str(Path(args.checkpoint) / "trainable.safetensors"))
    state = model.state_dict()
    for name, value in weights.items():
        key = name.removeprefix("model.")
        if key not in state:
            raise SystemExit(f"{name}: not a parameter of {args.init}")
        state[key].copy_(value)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--init")
    ap.add_argument("--checkpoint")
    ap.add_argument("--whisper", action="store_true", help="Whisper-base's own greedy transcripts (the encoder's ceiling)")
    ap.add_argument("--manifest", default=str(REPO / "corpus" / "test.jsonl"))
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--show", type=int, default=5, help="print this many transcripts beside the reference")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()
    import torch

    from speechpress.evaluate.metrics import wer

    data = utterances(Path(args.manifest), args.rows)
    start = time.perf_counter()
    predictions = []
    if args.whisper:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from speechpress.model.sources import resolve_base

        path = resolve_base("whisper-base").path
        whisper, processor = WhisperForConditionalGeneration.from_pretrained(str(path)).eval(), WhisperProcessor.from_pretrained(str(path))
        for _, samples in data:
            feats = processor(samples, sampling_rate=16000, return_tensors="pt").input_features
            with torch.inference_mode():
                ids = whisper.generate(feats, language="en", task="transcribe", max_new_tokens=96)
            predictions.append(processor.batch_decode(ids, skip_special_tokens=True)[0].strip())
        label = "whisper-base"
    else:
        model = load_model(args)
        for row, samples in data:
            answer = model.ask(samples, row["prompt"], max_new_tokens=64)[0]
            predictions.append(answer.text.strip())
        label = args.model or f"{args.init} + {args.checkpoint}"
    references = [row["answer"] for row, _ in data]
    score = wer(predictions, references)
    for (row, _), pred in list(zip(data, predictions))[: args.show]:
        print(f"  ref: {row['answer']}\n  hyp: {pred}", file=sys.stderr)
    result = {"model": label, "utterances": len(data), "wer": round(score["wer"], 4), "seconds": round(time.perf_counter() - start, 1),
              "predictions": [{"id": row["id"], "reference": row["answer"], "prediction": pred} for (row, _), pred in zip(data, predictions)]}
    print(json.dumps({k: v for k, v in result.items() if k != "predictions"}))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

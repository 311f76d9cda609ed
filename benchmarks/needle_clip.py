"""Is the needle readable from its own audio? For each retrieval (``sir``) question of a manifest, cut the needle
utterance out of its recording (its timeline times, 0.3 s either side), answer the question from that clip alone
by the options' likelihood (``SpeechLM.choose``, as ``eval --choice-scoring loglik``), and transcribe the clip.
What the model hears of the one sentence that holds the answer, with no long context and no press in the way.

    python benchmarks/needle_clip.py [--model speechpress-smol] [--benchmark corpus-dev/validation.jsonl]
        [--out results/speechpress-smol/needle-clip-dev.json]
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="speechpress-smol")
    ap.add_argument("--benchmark", default="corpus-dev/validation.jsonl")
    ap.add_argument("--pad", type=float, default=0.3, help="seconds kept either side of the needle (default 0.3)")
    ap.add_argument("--asr-prompt", default="Transcribe the speech.", help="the corpus's asr_short prompt")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from tqdm import tqdm

    from speechpress.audio import load_audio
    from speechpress.data.loaders import load_manifest
    from speechpress.evaluate.metrics import get_metric
    from speechpress.model.speechlm import SpeechLM

    model = SpeechLM.from_pretrained(args.model)
    rate = model.config.sample_rate
    examples = [e for e in load_manifest(args.benchmark) if e.task == "sir"]
    rows = []
    for e in tqdm(examples, desc="needles", unit="q"):
        needle = next(u for u in e.metadata["utterances"] if u["kind"] == "needle")
        samples = load_audio(str(e.audio), target_rate=rate).samples
        start = e.offset + max(0.0, needle["start"] - args.pad)
        clip = samples[int(start * rate) : int((e.offset + needle["end"] + args.pad) * rate)]
        context = model.prefill(clip)
        choice = model.choose(context, e.prompt, e.choices)
        heard = model.answer(context, args.asr_prompt, max_new_tokens=32).text
        rows.append({"id": e.id, "needle": needle["text"], "heard": heard, "reference": e.answer,
                     "prediction": choice.text, "choice_logprobs": choice.extra["choice_logprobs"]})
    right = sum(r["prediction"] == r["reference"] for r in rows)
    wer = get_metric("wer")([r["heard"] for r in rows], [r["needle"] for r in rows])["score"]
    chance = sum(1 / len(e.choices) for e in examples) / max(1, len(examples))
    result = {"model": args.model, "benchmark": args.benchmark, "questions": len(rows), "right": right,
              "accuracy": right / max(1, len(rows)), "chance": chance, "needle_wer": wer, "rows": rows}
    print(f"{right}/{len(rows)} right from the needle's own audio (chance {chance:.2f}); WER of the needle clips {wer:.3f}")
    if args.out:
        from pathlib import Path

        from speechpress.io import atomic_write_json

        atomic_write_json(Path(args.out), result)


if __name__ == "__main__":
    main()

"""What a `train.ctc_frames: llm` run has taught the projector, read without the LLM: greedy CTC over the LLM's
vocabulary (each audio token's best row of the input-embedding matrix or the blank, repeats and blanks dropped), on
utterances cut from their recordings' encodings, as the run trains on them.

    python benchmarks/ctc_llm_decode.py --init runs/speechpress-smol/phase4/model \\
        --checkpoint runs/speechpress-smol/phase4c/checkpoints/step-0000400 \\
        --manifest corpus-dictation/test-utts60.jsonl [--rows 30] [--out FILE.json]

``--init`` is the run's model.init, ``--checkpoint`` one of its checkpoints (projector + head). The JSON has the
transcripts, so `benchmarks/content_words.py FILE.json` counts the names and numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--cache", default="runs/speechpress-smol/cache", help="encoder frame cache folder (shared with training)")
    ap.add_argument("--show", type=int, default=4)
    ap.add_argument("--out")
    args = ap.parse_args()
    import torch
    from safetensors.torch import load_file

    from speechpress.encoder_cache import FrameCache, encoder_fingerprint
    from speechpress.io import atomic_write_json
    from speechpress.evaluate.metrics import wer
    from speechpress.model.speechlm import SpeechLM
    from speechpress.train.config import DataSection
    from speechpress.train.data import AudioStore, load_training_set
    from speechpress.train.frontend import AudioFrontend
    from speechpress.train.objectives import LLMVocabularyHead

    model = SpeechLM.from_pretrained(args.init).eval()
    head = LLMVocabularyHead(model.llm.get_input_embeddings())
    state = model.state_dict()
    for name, value in load_file(str(Path(args.checkpoint) / "trainable.safetensors")).items():
        if name.startswith("head."):
            getattr(head, name.split(".", 1)[1]).data.copy_(value)
        elif name.removeprefix("model.") in state:
            state[name.removeprefix("model.")].copy_(value)
        else:
            print(f"{name}: not a parameter of {args.init} or the head", file=sys.stderr)
            raise SystemExit(2)
    frontend = AudioFrontend(model, AudioStore(), FrameCache(args.cache, encoder_fingerprint(model)), slice_recordings=True)
    examples = load_training_set(DataSection(train=[args.manifest], tasks=["asr_short"])).examples[: args.rows]
    predictions = []
    with torch.no_grad():
        for ex in examples:
            frames, _ = frontend.frozen_tokens([ex])[0]
            best = head(model.projector(frames)).argmax(-1).tolist()
            ids = [i for k, i in enumerate(best) if i != head.blank_id and (k == 0 or i != best[k - 1])]
            predictions.append(model.tokenizer.decode(ids).strip())
    rows = [dict(id=ex.id, reference=ex.answer, prediction=p) for ex, p in zip(examples, predictions)]
    result = {"init": args.init, "checkpoint": args.checkpoint, "utterances": len(rows),
              "wer": round(wer(predictions, [ex.answer for ex in examples])["wer"], 4),
              "scale": round(float(head.log_scale.detach().exp()), 2)}
    for r in rows[: args.show]:
        print(f"  ref: {r['reference']}\n  hyp: {r['prediction']}")
    print(json.dumps(result))
    if args.out:
        atomic_write_json(args.out, dict(result, predictions=rows))


if __name__ == "__main__":
    main()

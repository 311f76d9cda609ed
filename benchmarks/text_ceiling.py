"""The LLM's own ceiling on the question tasks: the model's LLM given the gold transcript (speaker names and
utterance times from the timeline) in place of the audio, asked the same questions with the same chat template,
scored by the same metrics. What a perfect projector could reach with this LLM, beside chance; the analogue of
Whisper-base's own WER for transcription (``benchmarks/asr_wer.py --whisper``).

    python benchmarks/text_ceiling.py [--model DIR] [--benchmark corpus/test-90s.jsonl] [--out results/...json]
        [--choice-scoring generate|loglik]

``--choice-scoring loglik`` scores multiple choice as ``speechpress eval --choice-scoring loglik`` does: the bare
question, and the option whose tokens the LLM finds likeliest (sum of log-probabilities); numbers are still
generated.

Acoustic tasks (speaker gender, speaking rate) get the transcript too, which does not hold their answer: their
ceiling here is what the LLM guesses from names and words.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

CHANCE = {"mc": "1 / number of options", "numeric": "the most frequent gold answer"}


def transcript(example) -> str:
    meta = example.metadata or {}
    names = {s["id"]: s["name"] for s in meta.get("speakers", [])}
    lines = [f"[{u['start']:.0f} s] {names.get(u['speaker'], u['speaker'])}: {u['text']}" for u in meta.get("utterances", [])]
    return "\n".join(lines)


def option_logprob(llm, prompt_ids: list[int], option_ids: list[int]) -> float:
    """Sum of the option's token log-probabilities after the prompt (one forward, no cache)."""
    import torch

    with torch.inference_mode():
        logits = llm(input_ids=torch.tensor([prompt_ids + option_ids])).logits[0].float()
    logprobs = logits[len(prompt_ids) - 1 : -1].log_softmax(-1)
    return float(logprobs[torch.arange(len(option_ids)), option_ids].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    ap.add_argument("--benchmark", default="corpus/test-90s.jsonl")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--out", default=None)
    ap.add_argument("--choice-scoring", default="generate", choices=("generate", "loglik"))
    args = ap.parse_args()

    import torch

    from speechpress.cli.common import bundled_model
    from speechpress.data.loaders import load_manifest
    from speechpress.data.schema import LETTERS
    from speechpress.evaluate.metrics import get_metric
    from speechpress.evaluate.scoring import scoring_metric
    from speechpress.model.speechlm import SpeechLM

    model = SpeechLM.from_pretrained(args.model or bundled_model()).eval()
    tok = model.tokenizer
    examples = [e for e in load_manifest(args.benchmark) if e.task not in ("asr_short", "asr_long", "summary")]
    per_task = defaultdict(lambda: [0, 0])
    rows = []
    def prompt(e, question: str) -> list[int]:
        user = f"Here is the transcript of a recording.\n\n{transcript(e)}\n\n{question}"
        messages = [{"role": "user", "content": user}]
        if model.config.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": model.config.system_prompt})
        return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]

    for e in examples:
        logprobs = None
        if args.choice_scoring == "loglik" and e.choices:
            ids = prompt(e, e.prompt)
            logprobs = [option_logprob(model.llm, ids, tok(c, add_special_tokens=False)["input_ids"]) for c in e.choices]
            text = LETTERS[max(range(len(logprobs)), key=logprobs.__getitem__)]
        else:
            ids = prompt(e, e.text_prompt())
            with torch.inference_mode():
                out = model.llm.generate(torch.tensor([ids]), max_new_tokens=args.max_new_tokens, do_sample=False,
                                         pad_token_id=tok.eos_token_id)
            text = tok.decode(out[0, len(ids):], skip_special_tokens=True).strip()
        score = get_metric(scoring_metric(e))([text], [e.answer], choices=[e.choices])["score"]
        per_task[e.task][0] += score
        per_task[e.task][1] += 1
        rows.append({"id": e.id, "task": e.task, "reference": e.answer, "prediction": text, "score": score,
                     **({"choice_logprobs": logprobs} if logprobs is not None else {})})
    result = {"model": str(args.model or bundled_model()), "benchmark": args.benchmark,
              "choice_scoring": args.choice_scoring,
              "per_task": {t: {"accuracy": round(c / n, 3), "n": n} for t, (c, n) in sorted(per_task.items())},
              "predictions": rows}
    for t, v in result["per_task"].items():
        print(f"{t:<22} {v['accuracy']:.2f} of {v['n']}")
    if args.out:
        from speechpress.io import atomic_write_json

        atomic_write_json(Path(args.out), result)


if __name__ == "__main__":
    main()

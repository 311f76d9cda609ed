"""`speechpress demo`: see speechpress work on a fresh machine, with nothing downloaded.

It renders a multi-speaker recording with espeak-ng (a few seconds for five minutes), loads the trained
speechpress-smol model that ships with the package (its trained parts on the packaged Whisper-base and
SmolLM2-135M-Instruct), and answers the recording's questions uncompressed and
compressed, from one prefill per press, printing the answers beside the gold ones and what each press cost.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from speechpress.cli.common import BUNDLED_MODEL as BUNDLED
from speechpress.cli.common import add_int8_encoder_arg, bundled_model, check_int8_device, check_number
from speechpress.cost_model import MAX_MINUTES

DEMO_TASKS = ("sir", "speaker_count", "speaker_attribution", "temporal_order", "speaker_gender")


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="answer questions about a generated 4.5-minute recording, uncompressed and compressed (no downloads)",
        description=(
            "Render a multi-speaker recording with espeak-ng, load the bundled speechpress-smol model (or --model), "
            "and answer its questions with no compression and with each --press, one prefill per press. Prints the "
            "answers beside the gold ones, the audio tokens that reach the LLM, the KV cache they leave, the time, "
            "and the peak memory."
        ),
    )
    p.add_argument("--model", default=None, help=f"model directory or a bundled model's name (default: the bundled speechpress-smol, {BUNDLED}; "
                   "speechpress-tiny is the small, fast one)")
    p.add_argument("--minutes", type=float, default=4.5,
                   help="length of the generated recording (default 4.5: with SST at x8 its positions, one per audio "
                   "token plus one SST per 8, fill 7,600 of SmolLM2's 8,192)")
    p.add_argument("--seed", type=int, default=20261123, help="recording seed (default 20261123, never used in training)")
    p.add_argument(
        "--press",
        nargs="+",
        default=None,
        metavar="SPEC",
        help="compressed settings to compare with none (default: the model's trained presses, sst:8 and hfq@1.67, "
        "then avgpool:4; a model without trained presses: avgpool:4 and random:4)",
    )
    p.add_argument("--keep", default=None, metavar="DIR", help="write the recording and its questions here instead of a temporary folder")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    add_int8_encoder_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import warnings

    from speechpress.data.loaders import load_manifest
    from speechpress.data.synth import synthesize
    from speechpress.evaluate.cost import cache_bytes
    from speechpress.memory import peak_memory_bytes
    from speechpress.model.speechlm import SpeechLM, default_device

    check_number("--minutes", args.minutes, 0, MAX_MINUTES, above=True)
    if args.keep:
        from speechpress.io import check_output_dir

        check_output_dir(args.keep)
    device = args.device or default_device()
    if args.int8_encoder:
        check_int8_device(device)
    model_dir = args.model or bundled_model(BUNDLED)
    start = time.perf_counter()
    model = SpeechLM.from_pretrained(model_dir, device=device)
    if args.int8_encoder:
        model.quantize_encoder_int8()
    presses = args.press or default_presses(model)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp)
        report = synthesize(out, args.seed, split="test", durations=[args.minutes * 60], tasks=list(DEMO_TASKS))
        examples = [e for e in load_manifest(report.manifest) if e.task in DEMO_TASKS]
        print(f"recording: {args.minutes:g} min, {len(examples)} questions, rendered by espeak-ng in "
              f"{time.perf_counter() - start:.1f} s (with model loading)")
        chains = {}
        for spec in ["identity", *presses]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                chains[spec] = model.press_chain(spec)
            # every setting must fit the LLM's positions before the recording is encoded, not after
            model.check_fits(examples[0].audio, chains[spec], len(model.prompt_ids(None)[0]))
        audio = model.as_audio(str(examples[0].audio))
        encoded = model.encode(audio)  # once: every press below starts from the same encoder tokens
        results = []
        for spec, chain in chains.items():
            t0 = time.perf_counter()
            context = model.prefill(audio, chain, encoded=encoded) if not any(p.query_aware for p in chain) else None
            answers = []
            for e in examples:
                ctx = context or model.prefill(audio, chain, question=e.text_prompt(), encoded=encoded)
                answers.append(model.answer(ctx, e.text_prompt(), max_new_tokens=24))
            seconds = time.perf_counter() - t0
            correct = [_correct(e, a.text) for e, a in zip(examples, answers)]
            kv = cache_bytes((context or ctx).cache)
            results.append((spec, answers, correct, seconds, kv))
    _print(examples, results, peak_memory_bytes(model.device))
    return 0


def default_presses(model) -> list[str]:
    """The model's trained presses at their headline settings, then a training-free one for comparison."""
    trained = [spec for name, spec in (("sst", "sst:8"), ("hfq", "hfq@1.67")) if name in model.presses]
    return [*trained, "avgpool:4"] if trained else ["avgpool:4", "random:4"]


def _correct(example, prediction: str) -> bool:
    """Scored as the eval harness scores it (multiple-choice parsing, numeric answers)."""
    from speechpress.evaluate.metrics import get_metric
    from speechpress.evaluate.scoring import scoring_metric

    result = get_metric(scoring_metric(example))([prediction], [example.answer], choices=[example.choices])
    return result["score"] == 1.0


def _print(examples, results, peak: int) -> None:
    for i, e in enumerate(examples):
        gold = e.answer if not e.choices else f"{e.answer} ({e.answer_text()})"
        print(f"\nQ{i + 1} [{e.task}] {e.prompt}\n    gold: {gold}")
        for spec, answers, correct, _, _ in results:
            mark = "right" if correct[i] else "wrong"
            print(f"    {spec:<10} {mark:<5} {answers[i].text.strip()[:70]!r}")
    print(f"\n{'press':<10} {'correct':>7} {'audio tokens -> LLM':>21} {'KV cache':>10} {'time':>7}")
    for spec, answers, correct, seconds, kv in results:
        a = answers[0]
        print(f"{spec:<10} {sum(correct):>3}/{len(correct):<3} {a.encoder_tokens:>9} -> {a.llm_audio_tokens:<8} "
              f"{kv / 2**20:>7.1f} MB {seconds:>6.1f}s")
    print(f"peak memory of this process: {peak / 2**20:.0f} MB")

"""Does the frozen encoder carry the words? A character CTC probe on a model's frozen audio tokens.

A projector trained through a frozen LLM can lower its loss on the sentence frame alone (the LLM fills in a
template), so a model that never transcribes a name or a number does not say whether the encoder heard them.
This trains only a small head (linear, or a two-layer MLP of the projector's size) with CTC over characters on the
encoder tokens the LLM would get (25/s, cut from each utterance's whole recording as in training), then decodes
utterances of unseen voices and words greedily: if the probe spells names and numbers, the information is in the
encoder and the LLM path is what loses it; if not, the encoder is the limit.

    python benchmarks/encoder_probe.py --model runs/speechpress-smol/phase4/model \\
        --train corpus-dictation/train.jsonl --test corpus-dictation/test-utts60.jsonl --head linear mlp

Only the encoder runs on audio, once per recording (the frame cache of `--cache`, shared with training); the head
trains in seconds per hundred steps on a CPU.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model directory or bundled name: its encoder and pooling are probed")
    ap.add_argument("--train", required=True, help="a manifest of the generated corpus: every utterance of its recordings")
    ap.add_argument("--test", required=True, help="asr_short rows with offset and duration (scripts/utterance_manifest.py)")
    ap.add_argument("--head", nargs="+", default=["linear", "mlp"], choices=["linear", "mlp"])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--cache", default="runs/speechpress-smol/cache", help="encoder frame cache folder (shared with training)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the figures and transcripts as JSON here")
    args = ap.parse_args()
    import torch
    from torch import nn
    from tqdm import tqdm

    from speechpress.encoder_cache import FrameCache, encoder_fingerprint
    from speechpress.io import atomic_write_json
    from speechpress.evaluate.metrics import cer, wer
    from speechpress.model.speechlm import SpeechLM
    from speechpress.train.config import DataSection
    from speechpress.train.ctc import CTC_ALPHABET, ctc_greedy_decode, ctc_normalize, ctc_targets
    from speechpress.train.data import AudioStore, load_training_set
    from speechpress.train.frontend import AudioFrontend

    torch.manual_seed(args.seed)
    model = SpeechLM.from_pretrained(args.model).eval()
    frontend = AudioFrontend(model, AudioStore(), FrameCache(args.cache, encoder_fingerprint(model)), slice_recordings=True)
    train = [ex for ex in load_training_set(DataSection(train=[args.train], utterances=True, tasks=["asr_short"])).examples
             if ctc_normalize(ex.answer)]
    test = [ex for ex in load_training_set(DataSection(train=[args.test], tasks=["asr_short"])).examples]
    start = time.perf_counter()
    features = {}
    for ex in tqdm(train + test, desc="encoder tokens", unit="utt"):
        features[ex.id] = frontend.frozen_tokens([ex])[0][0]
    encode_seconds = time.perf_counter() - start
    dim = next(iter(features.values())).shape[-1]
    classes = len(CTC_ALPHABET) + 1
    result = {"model": args.model, "train_utterances": len(train), "test_utterances": len(test),
              "encode_seconds": round(encode_seconds, 1), "heads": {}}
    for kind in args.head:
        head = (nn.Linear(dim, classes) if kind == "linear"
                else nn.Sequential(nn.Linear(dim, 576), nn.GELU(), nn.Linear(576, 576), nn.GELU(), nn.Linear(576, classes)))
        opt = torch.optim.AdamW(head.parameters(), lr=args.lr)
        loss_fn = nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
        generator = torch.Generator().manual_seed(args.seed)
        losses = []
        t0 = time.perf_counter()
        for step in tqdm(range(args.steps), desc=f"{kind} head", unit="step"):
            batch = [train[int(i)] for i in torch.randint(len(train), (args.batch_size,), generator=generator)]
            rows = [features[ex.id] for ex in batch]
            targets = [ctc_targets(ex.answer) for ex in batch]
            padded = nn.utils.rnn.pad_sequence(rows, batch_first=True)
            log_probs = head(padded).log_softmax(-1).transpose(0, 1)
            loss = loss_fn(log_probs, torch.tensor([i for t in targets for i in t]), torch.tensor([r.shape[0] for r in rows]),
                           torch.tensor([len(t) for t in targets])) / sum(len(t) for t in targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        head.eval()
        with torch.no_grad():
            hyps = [ctc_greedy_decode(head(features[ex.id]).argmax(-1).tolist()) for ex in test]
        refs = [ctc_normalize(ex.answer) for ex in test]
        result["heads"][kind] = {
            "parameters": sum(p.numel() for p in head.parameters()), "train_seconds": round(time.perf_counter() - t0, 1),
            "loss_first_100": round(sum(losses[:100]) / max(1, len(losses[:100])), 3),
            "loss_last_100": round(sum(losses[-100:]) / max(1, len(losses[-100:])), 3),
            "test_cer": round(cer(hyps, refs, normalizer=None)["score"], 4),
            "test_wer": round(wer(hyps, refs, normalizer=None)["wer"], 4),
            "transcripts": [{"id": ex.id, "reference": r, "prediction": h} for ex, r, h in zip(test, refs, hyps)],
        }
        print(f"{kind}: CER {result['heads'][kind]['test_cer']:.3f}, WER {result['heads'][kind]['test_wer']:.3f} on "
              f"{len(test)} test utterances (loss {result['heads'][kind]['loss_first_100']} -> {result['heads'][kind]['loss_last_100']})")
        for t in result["heads"][kind]["transcripts"][:4]:
            print(f"  ref: {t['reference']}\n  hyp: {t['prediction']}")
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()

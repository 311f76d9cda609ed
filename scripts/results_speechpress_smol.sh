#!/usr/bin/env bash
# Regenerate the speechpress-smol results (docs/train.md, results/speechpress-smol/): `speechpress eval` on the
# test split (seed 9, never used in training), then `speechpress report`. Every run reads the encoder cache, so each recording is
# encoded once for the whole sweep; a finished run is skipped on a rerun, an interrupted one resumes.
#   90 s: the uncompressed baseline; avgpool, random, downsample, segment at k = 2, 4, 8, 16; SpeechPrune at 4 and
#         8; the KV presses knorm, streamingllm, tova and snapkv at 4; truncate (the first 30 s, what most speech
#         LLMs do).
#   5 min: the baseline, avgpool, random and SpeechPrune at 4.
#   asr60: WER on 60 test utterances for phase 2b (identity, avgpool x2-x16, the int8 encoder), speechpress-tiny,
#         phase 3 (identity, sst and avgpool x2-x16) and the bundled speechpress-smol (phase 3 in fp16).
#   dictation: 60 test-split dictation utterances (names, places, numbers); phase 4 beside phase 3 (docs/train.md).
# Env: MODEL (default: the phase-2b model that scripts/train_speechpress_smol.sh writes), OUT, ASR_ROWS, STAGES
# ("90s 5min"). Not yet run whole: the 90 s identity run takes about 1.5 min and a x2-x4 run about 1 min on 2 quiet
# cores; SpeechPrune (a prefill per question), the KV presses and the 5-minute stage cost more.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-runs/speechpress-smol/phase2b/model}
OUT=${OUT:-results/speechpress-smol}
ASR_ROWS=${ASR_ROWS:-12}
STAGES=${STAGES:-90s 5min}

[ -f corpus/test.jsonl ] || speechpress synth --out corpus --seed 9 --split test --durations 90 5m --hours 1
# The benchmarks: the first ASR_ROWS short utterances and every question with a short answer (multiple choice and
# numbers) on the test recordings of one length. Whole-recording transcripts and summaries are left out (answers
# of hundreds of tokens at about 30 ms each on CPU).
python3 - "$ASR_ROWS" <<'PY'
import json, sys
asr, short = [], {90.0: [], 300.0: []}
for line in open("corpus/test.jsonl"):
    r = json.loads(line)
    if r["task"] == "asr_short":
        asr.append(line)
    elif r["task"] not in ("asr_long", "summary"):
        short[r["duration"]].append(line)
open("corpus/test-90s.jsonl", "w").writelines(asr[: int(sys.argv[1])] + short[90.0])
open("corpus/test-5min.jsonl", "w").writelines(short[300.0])
open("corpus/test-asr60.jsonl", "w").writelines(asr[:60])  # WER on 60 utterances (12 were too few to rank models)
print(f"corpus/test-90s.jsonl: {int(sys.argv[1])} utterances + {len(short[90.0])} questions; "
      f"corpus/test-5min.jsonl: {len(short[300.0])} questions")
PY

CACHE=(--encoder-cache "$OUT/encoder-cache" --max-new-tokens 24 --no-progress)
for stage in $STAGES; do
  COMMON=(--benchmark "corpus/test-$stage.jsonl" --name "test-s9-$stage" --out "$OUT" "${CACHE[@]}")
  if [ "$stage" = 90s ]; then
    speechpress eval --model "$MODEL" --press identity "${COMMON[@]}"
    speechpress eval --model "$MODEL" --press avgpool random downsample segment --ratio 2 4 8 16 "${COMMON[@]}"
    speechpress eval --model "$MODEL" --press speechprune --ratio 4 8 "${COMMON[@]}"   # a prefill per question
    speechpress eval --model "$MODEL" --press knorm streamingllm tova snapkv --ratio 4 "${COMMON[@]}"
    speechpress eval --model "$MODEL" --press truncate "${COMMON[@]}"
  else
    speechpress eval --model "$MODEL" --press identity avgpool:4 random:4 speechprune:4 "${COMMON[@]}"
  fi
done
# Transcription on 60 utterances: phase 2b, phase 3 (SST against avgpool), speechpress-tiny, the int8 encoder.
ASR=(--benchmark corpus/test-asr60.jsonl --name test-s9-asr60 --out "$OUT" "${CACHE[@]}")
speechpress eval --model "$MODEL" --press identity avgpool --ratio 2 4 8 16 "${ASR[@]}"
speechpress eval --model "$MODEL" --int8-encoder "${ASR[@]}"
speechpress eval --model src/speechpress/assets/speechpress-tiny "${ASR[@]}"
[ -f runs/speechpress-smol/phase3/model/config.json ] &&
  speechpress eval --model runs/speechpress-smol/phase3/model --press identity sst avgpool --ratio 2 4 8 16 "${ASR[@]}"
speechpress eval --model speechpress-smol "${ASR[@]}"   # the fp16 bundle of phase 3: the same transcripts
# Multiple choice scored by the options' likelihood (docs/eval.md): the bundled model on the 90 s questions, its LLM
# given the gold transcript, and the needle's own audio on a validation-split corpus made for this diagnosis only.
speechpress eval --model speechpress-smol --press identity avgpool:4 random:4 truncate speechprune:4 sst:8 \
    --choice-scoring loglik --benchmark corpus/test-90s.jsonl --name test-s9-90s --out "$OUT" "${CACHE[@]}"
[ -f runs/speechpress-smol/phase2/model/config.json ] &&
  python3 benchmarks/text_ceiling.py --model runs/speechpress-smol/phase2/model --benchmark corpus/test-90s.jsonl \
    --choice-scoring loglik --out "$OUT/text-ceiling-90s-loglik.json"
[ -f corpus-dev/validation.jsonl ] || speechpress synth --out corpus-dev --seed 21 --split validation --durations 90 --hours 0.75
python3 benchmarks/needle_clip.py --model speechpress-smol --benchmark corpus-dev/validation.jsonl --out "$OUT/needle-clip-dev.json"
# Content words (phase 4's target): 60 utterances of dictation on the test split (names, places, numbers no template
# predicts; seed 13, never used in training), for the phase-3 model and the bundle.
[ -f corpus-dictation/test.jsonl ] || speechpress synth --out corpus-dictation --seed 13 --split test --durations 30 --hours 0.1 --genres dictation
python3 scripts/utterance_manifest.py corpus-dictation/test corpus-dictation/test-utts60.jsonl --rows 60
DICT=(--benchmark corpus-dictation/test-utts60.jsonl --name dictation-test60 --out "$OUT" --encoder-cache "$OUT/encoder-cache" --max-new-tokens 48 --no-progress)
[ -f runs/speechpress-smol/phase3/model/config.json ] && speechpress eval --model runs/speechpress-smol/phase3/model "${DICT[@]}"
speechpress eval --model speechpress-smol "${DICT[@]}"
# Phase 4 (dictation through the answer loss) beside phase 3: utterances in their recording and alone, the content
# words heard, the corpus utterances, the needles by likelihood; and the character CTC probe on the frozen encoder.
for phase in phase3 phase4; do
  M=runs/speechpress-smol/$phase/model
  [ -f "$M/config.json" ] || continue
  python3 benchmarks/utterance_context.py --model "$M" --manifest corpus-dictation/test-utts60.jsonl --rows 30 \
      --out "$OUT/utterance-context-$phase.json"
  python3 benchmarks/content_words.py "$OUT/utterance-context-$phase.json"
done
if [ -f runs/speechpress-smol/phase4/model/config.json ]; then
  M=runs/speechpress-smol/phase4/model
  speechpress eval --model "$M" "${DICT[@]}"
  speechpress eval --model "$M" "${ASR[@]}"
  speechpress eval --model "$M" --choice-scoring loglik --benchmark corpus/test-90s.jsonl --name test-s9-90s --out "$OUT" "${CACHE[@]}"
  python3 benchmarks/needle_clip.py --model "$M" --benchmark corpus-dev/validation.jsonl --out "$OUT/needle-clip-dev-phase4.json"
  [ -f corpus-dictation/train.jsonl ] || speechpress synth --out corpus-dictation --seed 11 --split train --durations 30 --hours 1.5 --genres dictation
  python3 benchmarks/encoder_probe.py --model "$M" --train corpus-dictation/train.jsonl --test corpus-dictation/test-utts60.jsonl \
      --out "$OUT/encoder-probe-dictation.json"
fi
# Phases 4c and 4e (CTC over the LLM's vocabulary; no LLM forward): greedy decodes of the test dictation and the test
# lexicon lists (words never heard in training), and the content words heard.
[ -f corpus-lexicon/test.jsonl ] || speechpress synth --out corpus-lexicon --seed 16 --split test --durations 30 --hours 0.1 --genres lexicon
python3 scripts/utterance_manifest.py corpus-lexicon/test corpus-lexicon/test-utts60.jsonl --rows 60
for pair in phase4c:phase4 phase4e:phase4c; do
  phase=${pair%%:*} init=runs/speechpress-smol/${pair##*:}/model
  ckpt=$(ls -d runs/speechpress-smol/$phase/checkpoints/step-* 2>/dev/null | tail -1) || true
  [ -n "$ckpt" ] && [ -f "$init/config.json" ] || continue
  python3 benchmarks/ctc_llm_decode.py --init "$init" --checkpoint "$ckpt" --manifest corpus-dictation/test-utts60.jsonl \
      --out "$OUT/ctc-llm-decode-$phase.json"
  python3 benchmarks/content_words.py "$OUT/ctc-llm-decode-$phase.json"
  python3 benchmarks/ctc_llm_decode.py --init "$init" --checkpoint "$ckpt" --manifest corpus-lexicon/test-utts60.jsonl \
      --out "$OUT/ctc-llm-decode-$phase-lexicon.json"
done
speechpress report "$OUT"

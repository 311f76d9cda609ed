#!/usr/bin/env bash
# Regenerate the speechpress-tiny results (README "Trained default model"): `speechpress eval` on the test split
# (seed 9, never used in training): the uncompressed baseline, SST, avgpool and random at k = 2, 4, 8, 16,
# SpeechPrune at 4 and 8, HFQ at 1.67 tokens/s, avgpool x4 with LoRA, downsample and segment at 4; then
# `speechpress report`. About 45 minutes on 2 CPU cores; finished runs are skipped on a rerun.
# Env: MODEL (default: the bundled model), SST (phase 3), LORA (the avgpool4-lora run), OUT, ASR_ROWS, MAX_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-src/speechpress/assets/speechpress-tiny}
SST=${SST:-runs/speechpress-tiny/phase3/model}
LORA=${LORA:-runs/speechpress-tiny/avgpool4-lora/model}
OUT=${OUT:-results/speechpress-tiny}
ASR_ROWS=${ASR_ROWS:-12}
MAX_SECONDS=${MAX_SECONDS:-90}

[ -f corpus/test.jsonl ] || speechpress synth --out corpus --seed 9 --split test --durations 90 5m --hours 1
# The benchmark: the first ASR_ROWS short utterances and every question with a short answer (multiple choice and
# numbers) on the test recordings of at most MAX_SECONDS (default: the ten 90 s ones). Whole-recording transcripts
# and summaries are left out (their answers run to thousands of byte tokens), and so are the 5-minute recordings:
# on 2 CPU cores each run re-encodes and prefills its audio, and this keeps the sweep under an hour.
python3 - "$ASR_ROWS" "$MAX_SECONDS" <<'PY'
import json, sys
rows, asr = [], 0
for line in open("corpus/test.jsonl"):
    r = json.loads(line)
    if r["task"] == "asr_short":
        asr += 1
        if asr > int(sys.argv[1]):
            continue
    elif r["task"] in ("asr_long", "summary") or r["duration"] > float(sys.argv[2]):
        continue
    rows.append(line)
open("corpus/test-results.jsonl", "w").writelines(rows)
print(f"corpus/test-results.jsonl: {len(rows)} questions")
PY

COMMON=(--benchmark corpus/test-results.jsonl --name test-s9 --out "$OUT" --max-new-tokens 160 --no-progress)
speechpress eval --model "$MODEL" --press identity "${COMMON[@]}"
speechpress eval --model "$SST" --press sst --ratio 2 4 8 16 "${COMMON[@]}"   # phase 3 (not bundled: docs/train.md)
speechpress eval --model "$MODEL" --press avgpool random --ratio 2 4 8 16 "${COMMON[@]}"
speechpress eval --model "$MODEL" --press speechprune --ratio 4 8 "${COMMON[@]}"  # one prefill per question: costly
speechpress eval --model "$MODEL" --press hfq --tokens-per-second 1.67 "${COMMON[@]}"
speechpress eval --model "$LORA" --press avgpool:4 "${COMMON[@]}"
speechpress eval --model "$MODEL" --press downsample segment --ratio 4 "${COMMON[@]}"
speechpress report "$OUT"

#!/usr/bin/env bash
# The fidelity study (docs/results.md): every method at matched compression on the same test recordings and
# questions, on one model, at 90 s, 5 min and 20 min; then `speechpress report` (tables with bootstrap intervals,
# accuracy-vs-compression plots, timelines of what each press kept) and scripts/fidelity_report.py (one line per
# paper claim: reproduced, partly, not, or not testable, with the numbers).
#   nohup bash scripts/fidelity_study.sh > runs/fidelity.log 2>&1 &
# Resumable: a finished run is skipped, an interrupted one resumes from its rows; every run reads one encoder cache,
# so each recording is encoded once for the whole study. Recordings come from test-split seeds never used in
# training (9: 90 s and 5 min; 19: 20 min). Multiple-choice questions are scored by the options' likelihood
# (docs/eval.md), so a model that cannot yet phrase an answer is still measured on what it heard.
# Env: MODEL (default: the bundled speechpress-smol), OUT (results/fidelity), STAGES ("90s 5min 20min").
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-speechpress-smol}
OUT=${OUT:-results/fidelity}
STAGES=${STAGES:-90s 5min 20min}
TOKENS_PER_SECOND=25  # the model's audio tokens per second before any press (Whisper frames stacked in pairs)

[ -f corpus/test.jsonl ] || speechpress synth --out corpus --seed 9 --split test --durations 90 5m --hours 1
[ -f corpus-20m/test.jsonl ] || speechpress synth --out corpus-20m --seed 19 --split test --durations 20m --hours 0.67
mkdir -p "$OUT"
# The study's questions per length: retrieval (sir), speaker count, who said it, temporal order, the other short
# questions, the summary, and transcription of the first 12 utterances (90 s only: their clips are the same at
# every length). Whole-recording transcripts are left out (thousands of tokens decoded per run on CPU).
# Each benchmark file sits beside its corpus's manifest (audio paths are relative to it).
python3 - <<'PY'
import json
from pathlib import Path
stages = {"90s": ("corpus/test.jsonl", 90.0), "5min": ("corpus/test.jsonl", 300.0), "20min": ("corpus-20m/test.jsonl", 1200.0)}
for stage, (manifest, seconds) in stages.items():
    rows, asr = [], []
    for line in open(manifest, encoding="utf-8"):
        r = json.loads(line)
        if r["task"] == "asr_short":
            asr.append(line)
        elif r["task"] != "asr_long" and r["duration"] == seconds:
            rows.append(line)
    rows = (asr[:12] if stage == "90s" else []) + rows
    path = Path(manifest).parent / f"study-{stage}.jsonl"
    path.write_text("".join(rows), encoding="utf-8")
    print(f"{path}: {len(rows)} questions")
PY

# SpeechPrune's pruning rates are relative to its 750-token phase-1 budget (PR 0.2 ... 0.8 keep 600 ... 150
# tokens); at a given length that is a compression factor n / kept, which random pruning gets too, so both keep
# exactly as many tokens.
pr_ratios() { python3 -c "import sys; s=float(sys.argv[1]); print(' '.join(f'{s*$TOKENS_PER_SECOND/round((1-p)*750):g}' for p in (0.2, 0.4, 0.6, 0.8)))" "$1"; }

# One eval command; a setting the model cannot take (more audio positions than the LLM has) is reported and
# the study goes on.
run() { speechpress eval --model "$MODEL" "$@" || echo "fidelity_study: skipped (exit $?): $*"; }

for stage in $STAGES; do
  case $stage in 90s) seconds=90 ;; 5min) seconds=300 ;; 20min) seconds=1200 ;; *) echo "unknown stage $stage"; exit 2 ;; esac
  [ "$stage" = 20min ] && bench=corpus-20m/study-$stage.jsonl || bench=corpus/study-$stage.jsonl
  COMMON=(--benchmark "$bench" --name "study-$stage" --out "$OUT" --encoder-cache "$OUT/encoder-cache"
          --choice-scoring loglik --max-new-tokens 48 --no-progress --count-flops first)
  PR=$(pr_ratios $seconds)
  if [ "$stage" = 90s ]; then
    # Each claim's first comparison first, so a study cut short still judges every claim once; then the curves.
    run --press identity truncate "${COMMON[@]}"                                     # uncompressed; the first 30 s
    run --press speechprune random --ratio $PR "${COMMON[@]}"                       # SpeechPrune vs random
    run --press avgpool --ratio 4 "${COMMON[@]}"                                    # Bhati et al. (no LoRA)
    run --press sst --ratio 8 16 "${COMMON[@]}"                                     # SST (trained 2 -> 4 -> 8)
    run --press snapkv knorm tova streamingllm --ratio 4 "${COMMON[@]}"             # KV presses at x4's bytes
    run --press speechprune random --ratio 2 4 8 16 "${COMMON[@]}"
    run --press avgpool segment downsample --ratio 2 4 8 16 "${COMMON[@]}"
    run --press avgpool segment --tokens-per-second 1.67 "${COMMON[@]}"             # FastSLM's rate, for HFQ
    run --press sst --ratio 2 4 "${COMMON[@]}"
  elif [ "$stage" = 5min ]; then
    run --press identity truncate "${COMMON[@]}"
    run --press speechprune random --ratio $PR 4 "${COMMON[@]}"
    run --press avgpool --ratio 4 8 "${COMMON[@]}"
    run --press sst --ratio 8 16 "${COMMON[@]}"
    run --press snapkv --ratio 4 "${COMMON[@]}"
  else
    # 20 minutes are 30,000 audio tokens: more than SmolLM2's 8,192 positions uncompressed, so identity and the
    # KV presses (whose positions count every token run) are refused; the token presses bring it inside.
    run --press truncate "${COMMON[@]}"
    run --press avgpool --ratio 4 8 "${COMMON[@]}"
    run --press speechprune random --ratio $PR "${COMMON[@]}"
    run --press identity sst:8 "${COMMON[@]}"
  fi
done
speechpress report "$OUT"
python3 scripts/fidelity_report.py "$OUT" --out docs/results.md --model "$MODEL"

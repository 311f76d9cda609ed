#!/usr/bin/env bash
# Train speechpress-smol: the pretrained Whisper-base encoder (frozen) + a trained projector + the pretrained
# SmolLM2-135M-Instruct (frozen), on the generated corpus, on CPU. Each phase reads the previous one's model; a
# finished phase (its model/ exists) is skipped and an interrupted one resumes from its last checkpoint, so the
# script can be run again after a kill or in the next session. Run it in the background:
#   nohup bash scripts/train_speechpress_smol.sh > runs/speechpress-smol.log 2>&1 &
# The test split's seed (9) is never used in training. docs/train.md lists each phase's time and figures.
# Phases: 1 ASR alignment, 2 question answering (projector only), 2b question answering with LoRA on the LLM,
# 3 SST + LoRA, 4 content-word alignment (projector only, on dictation: names, places and numbers no template predicts),
# 4c CTC of the projector's output over the LLM's vocabulary (no LLM forward), 4d the answer loss again after it,
# 4e 4c's CTC on many more words (lists of the LLM's single-token words, synth --genres lexicon; runs before 4d).
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=configs/train/speechpress-smol
RUNS=runs/speechpress-smol

# To carry an unfinished phase to the next session: SAVE_STATE=phase1 bash scripts/train_speechpress_smol.sh
# copies its latest checkpoint and log into train-state/ (commit them) and stops; SAVE_FINAL=phase2b keeps only
# a finished phase's last trainable weights (its model is re-exported from them).
if [ -n "${SAVE_FINAL:-}" ]; then   # a finished phase: its last trainable weights only (no optimizer state)
  last=$(ls -d "$RUNS/$SAVE_FINAL"/checkpoints/step-* | tail -1)
  rm -rf "train-state/speechpress-smol/$SAVE_FINAL" && mkdir -p "train-state/speechpress-smol/$SAVE_FINAL/final"
  cp "$last/trainable.safetensors" "$last/state.json" "train-state/speechpress-smol/$SAVE_FINAL/final/"
  cp "$RUNS/$SAVE_FINAL/log.jsonl" "train-state/speechpress-smol/$SAVE_FINAL/"
  echo "saved the final weights of $last to train-state/speechpress-smol/$SAVE_FINAL/final"; exit 0
fi
if [ -n "${SAVE_STATE:-}" ]; then
  last=$(ls -d "$RUNS/$SAVE_STATE"/checkpoints/step-* | tail -1)
  rm -rf "train-state/speechpress-smol/$SAVE_STATE" && mkdir -p "train-state/speechpress-smol/$SAVE_STATE"
  cp -r "$last" "train-state/speechpress-smol/$SAVE_STATE/" && cp "$RUNS/$SAVE_STATE/log.jsonl" "train-state/speechpress-smol/$SAVE_STATE/"
  echo "saved $last to train-state/speechpress-smol/$SAVE_STATE"; exit 0
fi


[ -f corpus/train.jsonl ] || speechpress synth --out corpus --seed 1 --split train --durations 30 90 5m --hours 3
[ -f corpus/validation.jsonl ] || speechpress synth --out corpus --seed 2 --split validation --durations 30 90 5m --hours 0.3
[ -f corpus/test.jsonl ] || speechpress synth --out corpus --seed 9 --split test --durations 90 5m --hours 1
[ -f corpus-30s/train.jsonl ] || speechpress synth --out corpus-30s --seed 3 --split train --durations 30 --hours 2
[ -f corpus-dictation/train.jsonl ] || speechpress synth --out corpus-dictation --seed 11 --split train --durations 30 --hours 1.5 --genres dictation
[ -f corpus-lexicon/train.jsonl ] || speechpress synth --out corpus-lexicon --seed 14 --split train --durations 30 --hours 1.5 --genres lexicon

# The starting point: both bases referenced by checksum, frame pairs stacked (25 tokens/s, width 1,024), a fresh
# two-layer MLP projector (seed 0).
[ -f "$RUNS/init/config.json" ] || speechpress init-model --encoder whisper-base --llm smollm2-135m-instruct \
    --encoder-pool-mode stack --projector mlp --seed 0 --out "$RUNS/init"

# A phase interrupted in an earlier session on another machine resumes from the checkpoint committed under
# train-state/ (SAVE_STATE above): trainable weights, optimizer, scheduler and RNG (safetensors + JSON) and the
# loss log, exactly as the run left them.
BUNDLE=src/speechpress/assets/speechpress-smol
for phase in ${PHASES:-phase1-asr:phase1 phase2-qa:phase2 phase2b-qa-lora:phase2b phase3-sst:phase3 phase4-align:phase4 phase4c-ctc-llm:phase4c phase4e-ctc-lexicon:phase4e phase4d-align-after-ctc:phase4d}; do
  config=${phase%%:*} name=${phase##*:} out=$RUNS/${phase##*:}
  if [ ! -f "$out/model/config.json" ] && [ -f "train-state/speechpress-smol/$name/model/config.json" ]; then
    mkdir -p "$out" && cp -r "train-state/speechpress-smol/$name/model" "$out/model"   # finished in an earlier session
  fi
  # A finished phase whose model is too big to commit (LoRA merged into the LLM) is kept as its last trainable
  # weights (train-state/.../final: trainable.safetensors + state.json) and exported again here.
  if [ ! -f "$out/model/config.json" ] && [ -f "train-state/speechpress-smol/$name/final/state.json" ]; then
    mkdir -p "$out" && speechpress train "$CFG/$config.yaml" --export "train-state/speechpress-smol/$name/final" "$out/model"
  fi
  if [ -f "$out/model/config.json" ]; then
    echo "$out: finished, skipped"
  else
    if [ ! -d "$out/checkpoints" ] && [ -d "train-state/speechpress-smol/$name" ]; then
      mkdir -p "$out/checkpoints"
      cp -r "train-state/speechpress-smol/$name"/step-* "$out/checkpoints/"
      cp "train-state/speechpress-smol/$name/log.jsonl" "$out/log.jsonl"
      echo "$out: resuming from the committed $(ls "$out/checkpoints")"
    fi
    speechpress train "$CFG/$config.yaml" train.progress=false
  fi
  # The bundle: a phase's trained parts only (projector, LLM weights LoRA changed) in fp16, referencing the packaged
  # bases by sha256, shipped as package data (merged LoRA changes as their low-rank factors). The bundled
  # speechpress-smol is phase 3 (docs/train.md says why): BUNDLE_PHASE=phase3 rewrites it after the bundle is removed.
  if [ "$name" = "${BUNDLE_PHASE:-none}" ] && [ ! -f "$BUNDLE/config.json" ]; then
    python3 -c "from speechpress.model.speechlm import SpeechLM; SpeechLM.from_pretrained('$out/model').save_pretrained('$BUNDLE', dtype='fp16')"
    echo "bundled $out/model into $BUNDLE"
  fi
done

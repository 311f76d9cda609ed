#!/usr/bin/env bash
# Train speechpress-tiny from nothing: generate the corpus, then phases 0-3 (Speech-XL's recipe with a CTC phase 0
# for the from-scratch encoder) and the trained presses, and write the bundled fp16 copy. Each phase reads the
# previous one's model; a finished phase (its model/ exists) is skipped and an interrupted one resumes.
# The test split's seed (9) is never used in training. On 2 CPU cores the whole run takes about 4 hours
# (phase 0 alone 1.7 h); docs/train.md lists each phase's time and measured progress.
# Outputs: corpus/ (about 330 MB of FLAC), runs/speechpress-tiny/<phase>/model, src/speechpress/assets/speechpress-tiny.
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=configs/train/speechpress-tiny
RUNS=runs/speechpress-tiny

[ -f corpus/train.jsonl ] || speechpress synth --out corpus --seed 1 --split train --durations 30 90 5m --hours 4
[ -f corpus/validation.jsonl ] || speechpress synth --out corpus --seed 2 --split validation --durations 30 90 5m --hours 0.3
[ -f corpus/test.jsonl ] || speechpress synth --out corpus --seed 9 --split test --durations 90 5m --hours 1

for phase in phase0-ctc:phase0 phase1-asr:phase1 phase2-qa:phase2 phase3-sst:phase3 hfq:hfq avgpool4-lora:avgpool4-lora; do
  config=${phase%%:*} out=$RUNS/${phase##*:}
  if [ -f "$out/model/config.json" ]; then echo "$out: finished, skipped"; continue; fi
  speechpress train "$CFG/$config.yaml"   # resumes from $out/checkpoints when an earlier try was interrupted
done

# The bundled model: phase 3's LLM with its trained SST and the HFQ-Former trained on top, stored in fp16.
python3 -c "from speechpress.model.speechlm import SpeechLM; SpeechLM.from_pretrained('$RUNS/hfq/model').save_pretrained('src/speechpress/assets/speechpress-tiny', dtype='fp16')"

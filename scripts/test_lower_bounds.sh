#!/usr/bin/env bash
# The declared lower bound of transformers (pyproject: >=5.21, which the Qwen2.5-Omni backend needs) under the
# tests that touch transformers most: both backends, SpeechLM, GGUF bases and the KV presses. A virtual
# environment that sees the installed packages, with only transformers pinned to the bound.
set -euo pipefail
cd "$(dirname "$0")/.."
LOW=${LOW:-5.21.0}
VENV=${VENV:-/tmp/speechpress-lower-bounds}
[ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install --quiet "transformers==$LOW"
"$VENV/bin/python" -c "import transformers; assert transformers.__version__ == '$LOW', transformers.__version__"
PYTHONPATH=src "$VENV/bin/python" -m pytest -q -x tests/test_backends.py tests/test_speechlm.py tests/test_source_gguf.py tests/test_kv_presses.py
echo "transformers $LOW: the tests above pass"

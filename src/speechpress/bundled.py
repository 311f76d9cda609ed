"""The models shipped inside the package, loadable by name (``--model speechpress-tiny``) from any directory.

Kept free of heavy imports: the command line reads it before it decides to load torch.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent / "assets"
# speechpress-smol (the default): Whisper-base + SmolLM2-135M-Instruct, its trained parts only (the bases come from
# their packages). speechpress-tiny: 7 M parameters trained from scratch, fast, transcribes poorly.
BUNDLED_NAMES = ("speechpress-smol", "speechpress-tiny")
DEFAULT_MODEL = "speechpress-smol"

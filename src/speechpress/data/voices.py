"""Speaker settings for the corpus: espeak-ng accents x gendered variants x pitch x rate.

Every exact setting (accent, variant, pitch, rate) belongs to one split by a fixed hash, so a test speaker is
never a setting the model trained on. Gender comes from the variant's own ``gender`` line in espeak-ng's data.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from speechpress.data.tts import Voice
from speechpress.data.vocab import _PATTERN, SPLITS

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda", "linda",
                   "steph", "steph2", "steph3")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Denis", "Diogo", "Henrique", "Hugo", "Lee",
                 "Marco", "antonio", "michel", "miguel", "travis", "victor", "sandro")
PITCHES = (30, 35, 40, 45, 50, 55, 60, 65, 70)
# espeak-ng -s is words per minute; buckets are far apart so the label is audible, not a coin toss.
RATE_CLASSES = {
    "slow": (120, 125, 130, 135),
    "moderate": (155, 160, 165, 170),
    "fast": (190, 195, 200, 205),
    "very fast": (225, 230, 235, 240),
}


def gender_of(variant: str) -> str:
    if variant in FEMALE_VARIANTS:
        return "female"
    if variant in MALE_VARIANTS:
        return "male"
    raise ValueError(f"variant {variant!r} has no gender label here")


def rate_class(rate: int) -> str:
    for name, rates in RATE_CLASSES.items():
        if rate in rates:
            return name
    raise ValueError(f"rate {rate} is not in any rate class")


def setting_split(accent: str, variant: str, pitch: int, rate: int) -> str:
    h = int(hashlib.md5(f"{accent}|{variant}|{pitch}|{rate}".encode()).hexdigest(), 16)
    return _PATTERN[h % len(_PATTERN)]


@functools.lru_cache(maxsize=None)
def _settings(split: str, accent: str, variant: str, rate_name: str) -> tuple[tuple[int, int], ...]:
    return tuple((p, r) for p in PITCHES for r in RATE_CLASSES[rate_name] if setting_split(accent, variant, p, r) == split)


@dataclass(frozen=True)
class SpeakerVoice:
    voice: Voice
    gender: str
    rate_class: str
    gain: float

    def as_dict(self) -> dict:
        v = self.voice
        return {"accent": v.name, "variant": v.variant, "pitch": v.pitch, "rate": v.rate, "gender": self.gender,
                "rate_class": self.rate_class, "gain": self.gain}


def draw_voices(rng: np.random.Generator, split: str, genders: list[str]) -> list[SpeakerVoice]:
    """Distinct-sounding voices (no variant twice) for one recording, from ``split``'s own settings."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    used: set[str] = set()
    out = []
    for gender in genders:
        variants = [v for v in (FEMALE_VARIANTS if gender == "female" else MALE_VARIANTS) if v not in used]
        while True:
            variant = variants[int(rng.integers(len(variants)))]
            accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
            rate_name = list(RATE_CLASSES)[int(rng.integers(len(RATE_CLASSES)))]
            options = _settings(split, accent, variant, rate_name)
            if options:
                break
        pitch, rate = options[int(rng.integers(len(options)))]
        used.add(variant)
        gain = round(float(rng.uniform(0.45, 0.9)), 3)
        out.append(SpeakerVoice(Voice(accent, variant, rate, pitch), gender, rate_name, gain))
    return out

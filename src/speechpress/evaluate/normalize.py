"""Text normalizers applied to both prediction and reference before WER, CER and ROUGE.

Scores from different speech LLMs are only comparable when they are normalized the same way, and peers
(lmms-eval, Ultravox, most papers) use Whisper's ``EnglishTextNormalizer``; research notes, peer projects
section 6. :func:`normalize_english` is exactly that class as transformers ships it
(``transformers.models.whisper.english_normalizer``), with Whisper's British -> American spelling table
(``whisper_english_spelling.json``: Whisper's ``english.json``, MIT licence, 1,739 entries, the same table a
Whisper tokenizer's ``normalizer.json`` holds). An earlier home-made subset was dropped: it differed from Whisper
on years (``nineteen eighty four``: ``19 84`` vs ``1984``), ``'s`` (``he's like``), titles (``mr`` ->
``mister``), currencies, ordinals and spellings, so its WER could not be set beside published numbers.

:func:`normalize_basic` (for CER and non-English text, where NFKD would split Hangul into jamo): NFKC,
lowercase, bracketed annotations removed, punctuation and symbols to spaces, whitespace collapsed.
:func:`words_to_numbers` (cardinal words to digits) stays for ``parse_number`` (counting answers).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from pathlib import Path

_BRACKETS = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)")

UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine".split())}
TEENS = {w: i + 10 for i, w in enumerate(
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
TENS = {w: (i + 2) * 10 for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
NUMBER_WORDS = frozenset(UNITS) | frozenset(TEENS) | frozenset(TENS) | frozenset(SCALES) | {"hundred"}


def _is_punct_or_symbol(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def _strip_punctuation(text: str, keep_decimal: bool) -> str:
    out = []
    for i, ch in enumerate(text):
        if keep_decimal and ch == "." and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
            out.append(ch)
        elif _is_punct_or_symbol(ch):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def words_to_numbers(words: list[str]) -> list[str]:
    """Replace runs of cardinal number words by their digits, for reading counting answers: ``twenty five`` ->
    ``25``, ``one hundred and three`` -> ``103``; a word that cannot continue the number starts a new one
    (``one two three`` -> ``1 2 3``)."""
    out: list[str] = []
    total = current = 0
    last: str | None = None  # kind of the previous number word, None outside a number

    def flush() -> None:
        nonlocal total, current, last
        if last is not None:
            out.append(str(total + current))
        total = current = 0
        last = None

    i = 0
    while i < len(words):
        w = words[i]
        if w in UNITS:
            if last in ("unit", "teen") or (last == "tens" and UNITS[w] == 0):
                flush()
            current += UNITS[w]
            last = "unit"
        elif w in TEENS:
            if last in ("unit", "teen", "tens"):
                flush()
            current += TEENS[w]
            last = "teen"
        elif w in TENS:
            if last in ("unit", "teen", "tens"):
                flush()
            current += TENS[w]
            last = "tens"
        elif w == "hundred":
            if last is None or current >= 100 or current == 0:
                flush()
                current = 100
            else:
                current *= 100
            last = "hundred"
        elif w in SCALES:
            if last is None:
                current = 1
            elif current == 0 or last == "scale":
                flush()
                current = 1
            total += current * SCALES[w]
            current = 0
            last = "scale"
        elif (
            w == "and"
            and last in ("hundred", "scale")
            and i + 1 < len(words)
            and (words[i + 1] in UNITS or words[i + 1] in TEENS or words[i + 1] in TENS)
        ):
            pass  # "one hundred and three": the "and" belongs to the number
        else:
            flush()
            out.append(w)
        i += 1
    flush()
    return out


@functools.lru_cache(maxsize=1)
def _whisper_english():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    table = Path(__file__).with_name("whisper_english_spelling.json")
    return EnglishTextNormalizer(json.loads(table.read_text(encoding="utf-8")))


def normalize_english(text: str) -> str:
    """Whisper's English normalizer (transformers' ``EnglishTextNormalizer`` with Whisper's spelling table)."""
    return _whisper_english()(text or "")


def normalize_basic(text: str) -> str:
    """Language-neutral normalizer (CER, non-English): NFKC, lowercase, no annotations, no punctuation."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _BRACKETS.sub(" ", text)
    return " ".join(_strip_punctuation(text, keep_decimal=False).split())


NORMALIZERS = {"english": normalize_english, "basic": normalize_basic, "none": lambda t: " ".join((t or "").split())}


def get_normalizer(name: str | None):
    """The normalizer called ``name`` (english, basic, none); None means none."""
    from speechpress.errors import ConfigError

    key = "none" if name is None else name
    if key not in NORMALIZERS:
        raise ConfigError(f"unknown text normalizer {name!r}; known: {', '.join(sorted(NORMALIZERS))}")
    return NORMALIZERS[key]

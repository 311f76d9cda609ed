"""Text normalizers applied to both prediction and reference before WER, CER and ROUGE.

Scores from different speech LLMs are only comparable when casing, punctuation and "25" vs "twenty-five" do not
count as errors; speech-LLM toolkits use Whisper's ``EnglishTextNormalizer`` for this (research notes, peer
projects section 6). This is our own small version of it, so the rules are few and written down here:

:func:`normalize_english`, in this order:

1. Unicode NFKD, drop combining marks (``café`` -> ``cafe``), lowercase.
2. Remove annotations in brackets: ``[laughter]``, ``<unk>``, ``(inaudible)``.
3. Expand unambiguous contractions: ``won't`` -> ``will not``, ``can't`` -> ``can not``, ``n't`` -> `` not``,
   ``'re`` -> `` are``, ``'ve`` -> `` have``, ``'ll`` -> `` will``, ``'m`` -> `` am``. ``'s`` and ``'d`` are
   ambiguous and stay; remaining apostrophes are then deleted (``john's`` -> ``johns``).
4. Digits: thousands separators go (``1,000`` -> ``1000``); a ``.`` between digits stays (``3.5``).
5. Every other punctuation or symbol character (Unicode categories P* and S*) becomes a space
   (``twenty-five`` -> ``twenty five``).
6. Filler words are removed: hmm, mm, mhm, mmm, uh, um.
7. Runs of cardinal number words become digits: ``twenty five`` -> ``25``, ``one hundred and three`` -> ``103``,
   ``two thousand twenty`` -> ``2020``, ``three million`` -> ``3000000``. A word that cannot continue the number
   starts a new one (``one two three`` -> ``1 2 3``, ``nineteen eighty`` -> ``19 80``: years spoken as pairs
   are not joined, unlike Whisper). ``and`` is absorbed only between number words after ``hundred`` or a scale
   word. Ordinals (``first``), fractions, ``a hundred`` and ``point`` decimals are left as words.
8. Whitespace is collapsed and stripped.

Not done (Whisper does them): British -> American spellings, currency and unit rewriting, ordinals.

:func:`normalize_basic` (for CER and non-English text, where step 1's NFKD would split Hangul into jamo):
NFKC, lowercase, steps 2, 5 and 8 only.
"""

from __future__ import annotations

import re
import unicodedata

_BRACKETS = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)")
_CONTRACTIONS = [
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bshan't\b"), "shall not"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'m\b"), " am"),
]
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_FILLERS = frozenset({"hmm", "mm", "mhm", "mmm", "uh", "um"})

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
    """Replace runs of cardinal number words by their digits (rules in the module docstring, step 7)."""
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


def normalize_english(text: str) -> str:
    """English normalizer for WER/ROUGE in the spirit of Whisper's ``EnglishTextNormalizer``; see module docstring."""
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = _BRACKETS.sub(" ", text)
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    text = text.replace("'", "")
    text = _THOUSANDS.sub("", text)
    text = _strip_punctuation(text, keep_decimal=True)
    words = [w for w in text.split() if w not in _FILLERS]
    return " ".join(words_to_numbers(words))


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

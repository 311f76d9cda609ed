"""Task metrics: each takes a list of predictions and a list of references and returns a dict with ``score``.

Scales follow the convention of the tool each metric comes from, so numbers can be set beside published ones:
WER and CER are fractions (0.25 = one error in four reference words; lower is better), BLEU is sacrebleu's
0-100, ROUGE-L F1, multiple-choice and numeric accuracy are fractions in [0, 1]. Corpus-level metrics (WER,
CER, BLEU) pool counts over all rows; ROUGE-L is the mean of per-row F1 (as rouge-score does). WER
normalizes with Whisper's English normalizer (``normalize.py``).

``METRICS`` maps a name to ``fn(predictions, references, **kw) -> dict``; :func:`aggregate` runs them per task
and pools them overall. Metric definitions for long-form tasks follow LongSpeech (research notes,
speechxl-and-benchmarks section 3.4): WER for ASR, case-insensitive BLEU-4 for translation, ROUGE F1 for
summaries (rouge-score, stemmer on), numeric accuracy with a parsability rate for counting tasks, accuracy for multiple choice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from speechpress.errors import ConfigError, DataError
from speechpress.evaluate.normalize import get_normalizer, normalize_basic, words_to_numbers

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _check_pairs(predictions: Sequence, references: Sequence, name: str) -> None:
    if len(predictions) != len(references):
        raise DataError(f"{name}: {len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise DataError(f"{name}: no rows to score")


# ----------------------------------------------------------------------------------------------- WER / CER


def _edit_counts(pred_units: list[list[str]], ref_units: list[list[str]]) -> dict:
    """Pooled substitutions/deletions/insertions/hits via jiwer; rows with an empty reference add insertions."""
    import jiwer

    counts = dict(substitutions=0, deletions=0, insertions=0, hits=0, reference_units=0)
    keep_p, keep_r = [], []
    for p, r in zip(pred_units, ref_units):
        if r:
            # jiwer splits on whitespace; units never contain spaces (CER joins characters with spaces).
            keep_p.append(" ".join(p))
            keep_r.append(" ".join(r))
        else:
            counts["insertions"] += len(p)
    if keep_r:
        out = jiwer.process_words(keep_r, keep_p)
        counts["substitutions"] += out.substitutions
        counts["deletions"] += out.deletions
        counts["insertions"] += out.insertions
        counts["hits"] += out.hits
    counts["reference_units"] = sum(len(r) for r in ref_units)
    return counts


def _error_rate(counts: dict) -> float:
    errors = counts["substitutions"] + counts["deletions"] + counts["insertions"]
    if counts["reference_units"] == 0:
        return 0.0 if errors == 0 else float("inf")
    return errors / counts["reference_units"]


def wer(predictions: Sequence[str], references: Sequence[str], normalizer: str | None = "english", **_) -> dict:
    """Corpus word error rate (S + D + I) / N after normalizing both sides (default: the English normalizer)."""
    _check_pairs(predictions, references, "wer")
    norm = get_normalizer(normalizer)
    counts = _edit_counts([norm(p).split() for p in predictions], [norm(r).split() for r in references])
    return dict(score=_error_rate(counts), wer=_error_rate(counts), n=len(references), normalizer=normalizer, **counts)


def cer(
    predictions: Sequence[str],
    references: Sequence[str],
    normalizer: str | None = "basic",
    remove_spaces: bool = False,
    **_,
) -> dict:
    """Corpus character error rate; ``remove_spaces=True`` for unsegmented scripts (zh/ja), as CJK ASR scores do."""
    _check_pairs(predictions, references, "cer")
    norm = get_normalizer(normalizer)

    def chars(text: str) -> list[str]:
        text = norm(text)
        if remove_spaces:
            return [c for c in text if not c.isspace()]
        return ["\u2581" if c == " " else c for c in text]  # a visible space unit, so jiwer does not split it away

    counts = _edit_counts([chars(p) for p in predictions], [chars(r) for r in references])
    return dict(score=_error_rate(counts), cer=_error_rate(counts), n=len(references), normalizer=normalizer, **counts)


# ------------------------------------------------------------------------------------------ multiple choice

_EXPLICIT = re.compile(
    r"\b(?:answer|option|choice)\s*(?:is|would be|:|=)?\s*[:\-]?\s*(?:option\s*)?[\(\[]?([a-z])[\)\]]?(?![a-z0-9])",
    re.IGNORECASE,
)
_WHOLE_LETTER = re.compile(r"^[\(\[]?([a-z])[\)\]]?[.:)]?$", re.IGNORECASE)
_LEADING_LETTER = re.compile(r"^[\(\[]([A-Za-z])[\)\]]\s|^([A-Z])[.:)]\s")
_HEDGE = re.compile(r"(?<![A-Za-z])[\(\[]?[A-Z][\)\]]?\s+or\s+[\(\[]?[A-Z][\)\]]?(?![A-Za-z])")
_PAREN_LETTER = re.compile(r"[\(\[]([A-Z])[\)\]]")


def _explicit_letters(text: str) -> list[str]:
    """Letters after "answer/option/choice"; a lowercase one only when nothing follows it but punctuation, so
    "the answer is a dog" reads as text, not as option A."""
    out = []
    for m in _EXPLICIT.finditer(text):
        letter = m.group(1)
        rest = text[m.end() :].lstrip(" )]")
        if letter.isupper() or not rest or rest[0] in ".,;:!?":
            out.append(letter)
    return out


def _letter_index(letter: str, n_choices: int) -> int | None:
    i = LETTERS.find(letter.upper())
    return i if 0 <= i < n_choices else None


def _text_key(text: str) -> str:
    return normalize_basic(text)


def parse_choice(response: str, choices: Sequence[str]) -> int | None:
    """Index of the option a free-form ``response`` picks, or None when it picks none or several.

    Tried in order, the first rule that finds something decides:
    1. the whole response is a letter: ``B``, ``(B)``, ``B.``, ``b)``;
    2. an explicit phrase: ``The answer is B``, ``answer: b``, ``Option (C)`` (several different letters, or a
       hedge such as ``A or B``, -> None);
    3. a leading label: ``B. Paris``, ``(B) Paris``, ``B) Paris``;
    4. exactly one parenthesised capital ``(B)`` anywhere;
    5. the text of exactly one option, whole words, case and punctuation ignored (an option found only inside a
       longer option that was also found does not count: "dark red" beats "red").
    A letter beyond the number of options is ignored. A letter wins over option text when both are present.
    """
    text = " ".join((response or "").split())
    n = len(choices)
    if not text or n == 0:
        return None
    m = _WHOLE_LETTER.match(text)
    if m:
        return _letter_index(m.group(1), n)
    if _HEDGE.search(text):
        return None
    found = {_letter_index(x, n) for x in _explicit_letters(text)} - {None}
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        return None
    m = _LEADING_LETTER.match(text)
    if m:
        idx = _letter_index(m.group(1) or m.group(2), n)
        if idx is not None:
            return idx
    found = {_letter_index(x, n) for x in _PAREN_LETTER.findall(text)} - {None}
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        return None
    return _match_option_text(text, choices)


def _match_option_text(text: str, choices: Sequence[str]) -> int | None:
    hay = f" {_text_key(text)} "
    spans: dict[int, list[tuple[int, int]]] = {}
    for i, choice in enumerate(choices):
        key = _text_key(choice)
        if not key:
            continue
        needle = f" {key} "
        start = hay.find(needle)
        while start != -1:
            spans.setdefault(i, []).append((start, start + len(needle)))
            start = hay.find(needle, start + 1)
    # Drop an option whose every occurrence lies inside an occurrence of a longer found option.
    kept = [
        i
        for i, occ in spans.items()
        if not all(
            any(j != i and s2 <= s and e <= e2 and (e2 - s2) > (e - s) for j, o2 in spans.items() for s2, e2 in o2)
            for s, e in occ
        )
    ]
    return kept[0] if len(kept) == 1 else None


def _reference_index(ref, choices: Sequence[str]) -> int:
    if isinstance(ref, int) and not isinstance(ref, bool):
        if 0 <= ref < len(choices):
            return ref
    elif isinstance(ref, str):
        stripped = ref.strip()
        if len(stripped) == 1 and _letter_index(stripped, len(choices)) is not None:
            return _letter_index(stripped, len(choices))
        keys = [_text_key(c) for c in choices]
        if _text_key(stripped) in keys and keys.count(_text_key(stripped)) == 1:
            return keys.index(_text_key(stripped))
    raise DataError(f"reference {ref!r} is not a letter, index or option text of {list(choices)!r}")


def mc_accuracy(
    predictions: Sequence[str], references: Sequence, choices: Sequence[Sequence[str]] | None = None, **_
) -> dict:
    """Multiple-choice accuracy; unparseable or ambiguous answers count as wrong and are reported as unparsed."""
    _check_pairs(predictions, references, "mc_accuracy")
    if choices is None or len(choices) != len(predictions):
        raise DataError("mc_accuracy needs choices=[options per row], one list per prediction")
    correct = unparsed = 0
    for pred, ref, opts in zip(predictions, references, choices):
        want = _reference_index(ref, opts)
        got = parse_choice(pred, opts)
        if got is None:
            unparsed += 1
        elif got == want:
            correct += 1
    n = len(predictions)
    return dict(score=correct / n, accuracy=correct / n, correct=correct, unparsed=unparsed, unparsed_rate=unparsed / n, n=n)


# --------------------------------------------------------------------------------------------------- BLEU


def bleu(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    lowercase: bool = True,
    tokenize: str = "13a",
    **_,
) -> dict:
    """sacrebleu corpus BLEU-4 (0-100) with its signature; case-insensitive by default, as LongSpeech scores
    translation. ``references`` is one string per row, or a list of alternative references per row."""
    import sacrebleu

    _check_pairs(predictions, references, "bleu")
    rows = [[r] if isinstance(r, str) else list(r) for r in references]
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise DataError("bleu: every row needs the same number of alternative references")
    # sacrebleu wants one stream per reference position.
    streams = [[r[k] for r in rows] for k in range(width)]
    metric = sacrebleu.BLEU(lowercase=lowercase, tokenize=tokenize)
    result = metric.corpus_score(list(predictions), streams)
    return dict(
        score=float(result.score),
        bleu=float(result.score),
        precisions=[float(p) for p in result.precisions],
        brevity_penalty=float(result.bp),
        signature=str(metric.get_signature()),
        n=len(predictions),
    )


# ------------------------------------------------------------------------------------------------ ROUGE


def rouge(predictions: Sequence[str], references: Sequence[str], normalizer: str | None = None,
          use_stemmer: bool = True, **_) -> dict:
    """ROUGE-L F1 with ROUGE-1/2 F1 beside it, by Google's ``rouge-score`` (the package papers and lmms-eval use),
    Porter stemmer on; means of per-row F1, in [0, 1]. rouge-score lowercases and keeps only ``[a-z0-9]`` tokens,
    so a text with no Latin letters or digits scores 0 (rouge-score's own behaviour, also for two empty texts).
    ``normalizer`` (off by default, as peers score) is applied first when given."""
    from rouge_score import rouge_scorer

    _check_pairs(predictions, references, "rouge_l")
    norm = get_normalizer(normalizer)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    r1 = r2 = rl = 0.0
    for pred, ref in zip(predictions, references):
        s = scorer.score(norm(ref), norm(pred))  # rouge-score takes (target, prediction)
        r1, r2, rl = r1 + s["rouge1"].fmeasure, r2 + s["rouge2"].fmeasure, rl + s["rougeL"].fmeasure
    n = len(predictions)
    return dict(score=rl / n, rouge_l=rl / n, rouge1=r1 / n, rouge2=r2 / n, n=n, stemmer=use_stemmer,
                normalizer=normalizer)


# ---------------------------------------------------------------------------------------- numeric accuracy

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")


def parse_number(text) -> float | None:
    """The first number in ``text``, written in digits (``3``, ``-2``, ``1,000``, ``2.5``) or cardinal words
    (``three``, ``twenty-one``, ``one hundred and five``); None when there is none."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    s = (text or "").lower()
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    s = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", s)  # twenty-one -> twenty one
    # Words and numbers as separate tokens; punctuation split off except a sign or a decimal point.
    tokens = re.findall(r"-?\d+(?:\.\d+)?|[a-z]+", s)
    for tok in words_to_numbers(tokens):
        if _NUMBER.fullmatch(tok):
            return float(tok)
    return None


def numeric_accuracy(predictions: Sequence[str], references: Sequence, tolerance: float = 0.0, **_) -> dict:
    """LongSpeech's counting-task scores: numeric accuracy N.A = correct / all, parsability rate P.R (a number
    was found), post-parsing precision Pr = N.A / P.R, misunderstanding rate M.R = 1 - P.R (all fractions)."""
    _check_pairs(predictions, references, "numeric_accuracy")
    correct = parsed = 0
    for pred, ref in zip(predictions, references):
        want = parse_number(ref)
        if want is None:
            raise DataError(f"numeric reference {ref!r} holds no number")
        got = parse_number(pred)
        if got is None:
            continue
        parsed += 1
        if abs(got - want) <= tolerance:
            correct += 1
    n = len(predictions)
    acc, rate = correct / n, parsed / n
    return dict(
        score=acc,
        accuracy=acc,
        parsability_rate=rate,
        post_parse_precision=(correct / parsed) if parsed else 0.0,
        misunderstanding_rate=1.0 - rate,
        correct=correct,
        unparsed=n - parsed,
        n=n,
    )


# ------------------------------------------------------------------------------------------ F1 (AudioMarathon)


def _f1_per_label(true: list, pred: list, labels: list) -> tuple[list[float], list[int]]:
    """Per-label F1 and support as sklearn's ``precision_recall_fscore_support(zero_division=0)`` computes them."""
    f1s, support = [], []
    for label in labels:
        tp = sum(t == label and p == label for t, p in zip(true, pred))
        fp = sum(t != label and p == label for t, p in zip(true, pred))
        fn = sum(t == label and p != label for t, p in zip(true, pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        support.append(tp + fn)
    return f1s, support


def f1(predictions: Sequence[str], references: Sequence, choices: Sequence[Sequence[str]] | None = None,
       average: str = "macro", classes: str = "letter", labels: str = "present", **_) -> dict:
    """AudioMarathon's F1, as its official scripts compute it with sklearn.

    Each answer is parsed to an option (:func:`parse_choice`); its class is the option letter (``classes="letter"``)
    or the option text, case-insensitive (``"answer"``: VoxCeleb age and gender, whose scripts compare texts).
    Rows whose answer picks no valid class are dropped before scoring, as the official scripts drop them (their
    count is ``unparsed``; ``accuracy`` beside the score is over all rows). ``labels``: ``present`` (the classes
    seen among kept rows, sklearn's default), ``options`` (every option letter, A..D as GTZAN/RACE pass them) or
    ``answers`` (every gold class of the task, as the age script passes them). ``average``: macro or weighted."""
    _check_pairs(predictions, references, "f1")
    if choices is None or len(choices) != len(predictions):
        raise DataError("f1 needs choices=[options per row], one list per prediction")

    def cls(i: int, opts) -> str:
        return LETTERS[i] if classes == "letter" else " ".join(str(opts[i]).lower().split())

    gold = [cls(_reference_index(r, o), o) for r, o in zip(references, choices)]
    valid = set(gold) if classes != "letter" else None
    true, pred, correct = [], [], 0
    for p, g, opts in zip(predictions, gold, choices):
        i = parse_choice(p, opts)
        got = None if i is None else cls(i, opts)
        if got is None or (valid is not None and got not in valid):
            continue
        true.append(g)
        pred.append(got)
        correct += got == g
    n = len(predictions)
    if labels == "options":
        label_set = list(LETTERS[: max(len(o) for o in choices)])
    elif labels == "answers":
        label_set = sorted(set(gold))
    else:
        label_set = sorted(set(true) | set(pred))
    score = 0.0
    if true:
        per, support = _f1_per_label(true, pred, label_set)
        if average == "weighted":
            score = sum(f * s for f, s in zip(per, support)) / sum(support) if sum(support) else 0.0
        else:
            score = sum(per) / len(per)
    return dict(score=score, f1=score, average=average, classes=classes, labels=label_set, kept=len(true),
                unparsed=n - len(true), accuracy=correct / n, n=n)


def wer_utterance_mean(predictions: Sequence[str], references: Sequence[str], **_) -> dict:
    """AudioMarathon's ASR score: the mean of per-utterance WER (not pooled), after its own normalizer
    (lowercase; ``.!?,;:"()[]{}`` to spaces; hyphens and apostrophes removed); an empty side counts WER 1."""
    import jiwer

    _check_pairs(predictions, references, "wer_utterance_mean")

    def std(text: str) -> str:
        text = re.sub(r"[.!?,;:\"()\[\]{}]", " ", (text or "").lower())
        return " ".join(re.sub(r"[\-']", "", text).split())

    rates = [jiwer.wer(std(r), std(p)) if std(r) and std(p) else 1.0 for p, r in zip(predictions, references)]
    score = sum(rates) / len(rates)
    return dict(score=score, wer=score, n=len(rates), normalizer="audiomarathon")


# ------------------------------------------------------------------------------- LongSpeech label tasks

# LongSpeech section 3.2.2 (research notes, speechxl-and-benchmarks 3.4): fine emotion -> 7 coarse classes,
# and each coarse class's polarity for relaxed accuracy.
EMOTION_COARSE = {
    "positive-higharousal": ("positive", "excited amused"),
    "positive-uplifting": ("positive", "hopeful determined inspirational awe vivid"),
    "negative-sadness/reflection": ("negative", "melancholy somber pensive reflective"),
    "negative-tension/seriousness": ("negative", "suspenseful serious dramatic urgent intense"),
    "cognitive-curiosity": ("cognitive", "intrigued questioning"),
    "cognitive-uncertainty": ("cognitive", "confused"),
    "neutral-informative": ("neutral", "neutral calm objective informative assertive"),
}
_FINE = {w: c for c, (_, words) in EMOTION_COARSE.items() for w in words.split()}


def parse_emotion(text) -> str | None:
    """The coarse emotion class named in ``text``: a coarse label itself, else the first fine label word."""
    t = " ".join(str(text or "").lower().replace("_", "-").split())
    t = re.sub(r"\s*([/-])\s*", r"\1", t)
    for coarse in sorted(EMOTION_COARSE, key=len, reverse=True):
        if coarse in t:
            return coarse
    hits = [(m.start(), _FINE[m.group(0)]) for m in re.finditer(r"[a-z]+", t) if m.group(0) in _FINE]
    return min(hits)[1] if hits else None


def emotion_accuracy(predictions: Sequence[str], references: Sequence[str], **_) -> dict:
    """LongSpeech emotionQA: strict accuracy (same coarse class of 7) and relaxed accuracy (same polarity:
    positive, negative, cognitive, neutral), both over all rows; an answer naming no emotion is wrong."""
    _check_pairs(predictions, references, "emotion_accuracy")
    strict = relaxed = unparsed = 0
    for p, r in zip(predictions, references):
        want, got = parse_emotion(r), parse_emotion(p)
        if want is None:
            raise DataError(f"emotion reference {r!r} names none of LongSpeech's emotion labels")
        if got is None:
            unparsed += 1
            continue
        strict += got == want
        relaxed += EMOTION_COARSE[got][0] == EMOTION_COARSE[want][0]
    n = len(predictions)
    return dict(score=strict / n, strict_accuracy=strict / n, relaxed_accuracy=relaxed / n, unparsed=unparsed, n=n)


LANGUAGES = {
    "en": "english", "zh": "chinese mandarin", "de": "german deutsch", "fr": "french", "it": "italian",
    "es": "spanish", "ja": "japanese", "ko": "korean", "ru": "russian", "pt": "portuguese", "nl": "dutch",
    "pl": "polish", "cs": "czech", "sv": "swedish", "fi": "finnish", "da": "danish", "no": "norwegian",
    "ro": "romanian", "tr": "turkish", "ar": "arabic", "hi": "hindi", "id": "indonesian", "vi": "vietnamese",
    "uk": "ukrainian", "el": "greek", "hu": "hungarian", "hr": "croatian", "sk": "slovak", "sl": "slovenian",
    "et": "estonian", "lt": "lithuanian", "lv": "latvian", "bg": "bulgarian", "mt": "maltese", "ca": "catalan",
}
_LANG_NAMES = {n: c for c, names in LANGUAGES.items() for n in names.split()}
_LANG_NAMES.update({"中文": "zh", "汉语": "zh", "普通话": "zh", "英语": "en", "日语": "ja", "韩语": "ko"})


def parse_language(text) -> str | None:
    """The language a text names, as an ISO 639-1 code: a ``<|xx|>`` tag, a bare code as the whole answer, or a
    language name (the first one named)."""
    t = " ".join(str(text or "").lower().split())
    tag = re.search(r"<\|([a-z]{2})\|>", t)
    if tag:
        return tag.group(1)
    bare = t.strip(" .!\"'")
    if bare in LANGUAGES:
        return bare
    hits = [(m.start(), _LANG_NAMES[m.group(0)]) for m in re.finditer(r"[a-z]+", t) if m.group(0) in _LANG_NAMES]
    hits += [(t.find(n), c) for n, c in _LANG_NAMES.items() if not n.isascii() and n in t]
    return min(hits)[1] if hits else None


def language_detection(predictions: Sequence[str], references: Sequence[str], **_) -> dict:
    """LongSpeech language detection: detection accuracy D.A (the right language), misunderstanding rate M.R (no
    language named) and detection errors D.E (a wrong language); the three partition the rows."""
    _check_pairs(predictions, references, "language_detection")
    right = wrong = none = 0
    for p, r in zip(predictions, references):
        want = parse_language(r)
        if want is None:
            raise DataError(f"language reference {r!r} names no known language")
        got = parse_language(p)
        if got is None:
            none += 1
        elif got == want:
            right += 1
        else:
            wrong += 1
    n = len(predictions)
    return dict(score=right / n, detection_accuracy=right / n, misunderstanding_rate=none / n,
                detection_errors=wrong / n, n=n)


# ------------------------------------------------------------------------------------ registry, aggregation

METRICS: dict[str, Callable[..., dict]] = {
    "wer": wer,
    "cer": cer,
    "mc_accuracy": mc_accuracy,
    "bleu": bleu,
    "rouge_l": rouge,
    "numeric_accuracy": numeric_accuracy,
    "f1_macro": f1,
    "f1_macro_options": lambda p, r, **kw: f1(p, r, **dict(kw, labels="options")),
    "f1_macro_answers": lambda p, r, **kw: f1(p, r, **dict(kw, classes="answer", labels="answers")),
    "f1_weighted_answers": lambda p, r, **kw: f1(p, r, **dict(kw, classes="answer", labels="answers",
                                                              average="weighted")),
    "wer_utterance_mean": wer_utterance_mean,
    "emotion_accuracy": emotion_accuracy,
    "language_detection": language_detection,
}

# Whether a higher score is better: reports and plots need it to draw "better" the same way for every metric.
HIGHER_IS_BETTER = {"wer": False, "cer": False, "mc_accuracy": True, "bleu": True, "rouge_l": True, "numeric_accuracy": True,
                    "f1_macro": True, "f1_macro_options": True, "f1_macro_answers": True, "f1_weighted_answers": True,
                    "wer_utterance_mean": False, "emotion_accuracy": True, "language_detection": True}


def get_metric(name: str) -> Callable[..., dict]:
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
    return METRICS[name]


# Metrics that are a ratio of sums over rows, as (numerator, denominator) of one row's own result: a bootstrap
# resample is then a weighted sum of the rows' parts, not a rescoring (identical numbers, about 1,000 times faster).
# Every other metric (BLEU, F1) is scored again on each resample.
_ERRORS = (lambda r: r["substitutions"] + r["deletions"] + r["insertions"], lambda r: r["reference_units"])
_MEAN = (lambda r: r["score"], lambda r: 1)
ROW_PARTS = {"wer": _ERRORS, "cer": _ERRORS, "mc_accuracy": _MEAN, "rouge_l": _MEAN, "numeric_accuracy": _MEAN,
             "wer_utterance_mean": _MEAN, "emotion_accuracy": _MEAN, "language_detection": _MEAN}
BOOTSTRAP_RESAMPLES = 1000
# A metric scored again per resample (BLEU: about 45 ms on 300 rows) gets fewer, so finishing a run stays quick.
RESCORE_RESAMPLES = 200


def _resample_indices(n: int, resamples: int, seed: int):
    """Row indices of each bootstrap resample (numpy's PCG64, ``seed``): the one draw every paired comparison shares,
    so two runs resampled with the same seed are resampled on the same questions."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_scores(name: str, rows: Sequence[dict], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                     rescore: bool = False) -> list[float]:
    """The metric's score on ``resamples`` resamples of ``rows`` drawn with replacement (numpy's PCG64, ``seed``).

    ``rescore`` scores every resample with the metric itself, the slow path the row parts must agree with; a metric
    without row parts is always rescored, on at most ``RESCORE_RESAMPLES`` resamples."""
    import numpy as np

    metric = get_metric(name)
    n = len(rows)
    if name not in ROW_PARTS and not rescore:
        resamples = min(resamples, RESCORE_RESAMPLES)
    idx = _resample_indices(n, resamples, seed)

    def run(items) -> dict:
        kw = {"choices": [r.get("choices") for r in items]} if any("choices" in r for r in items) else {}
        return metric([r["prediction"] for r in items], [r["reference"] for r in items], **kw)

    if name in ROW_PARTS and not rescore:
        num_of, den_of = ROW_PARTS[name]
        singles = [run([r]) for r in rows]
        num = np.array([num_of(s) for s in singles], dtype=np.float64)
        den = np.array([den_of(s) for s in singles], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (num[idx].sum(axis=1) / den[idx].sum(axis=1)).tolist()
    return [float(run([rows[i] for i in draw])["score"]) for draw in idx]


def bootstrap_interval(name: str, rows: Sequence[dict], level: float = 0.95, **kw) -> list[float] | None:
    """The percentile bootstrap interval of the metric over rows (None under two rows: nothing to resample)."""
    import numpy as np

    if len(rows) < 2:
        return None
    scores = np.array(bootstrap_scores(name, rows, **kw))
    scores = scores[np.isfinite(scores)]
    if not scores.size:
        return None
    lo, hi = np.quantile(scores, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def paired_difference(name: str, rows_a: Sequence[dict], rows_b: Sequence[dict], level: float = 0.95,
                      **kw) -> tuple[float, list[float] | None]:
    """Score of A minus score of B on the same questions, with the paired bootstrap interval: each resample
    draws the same questions for both runs, so what the questions share (their difficulty) cancels out, and a
    difference two separate intervals would call noise can be told apart. Rows are matched by ``id``."""
    import numpy as np

    b_by_id = {r["id"]: r for r in rows_b}
    if {r["id"] for r in rows_a} != set(b_by_id):
        raise DataError(f"paired_difference: the runs answered different questions ({len(rows_a)} and {len(rows_b)} rows)")
    rows_b = [b_by_id[r["id"]] for r in rows_a]
    metric = get_metric(name)

    def whole(rows) -> float:
        kwargs = {"choices": [r.get("choices") for r in rows]} if any("choices" in r for r in rows) else {}
        return float(metric([r["prediction"] for r in rows], [r["reference"] for r in rows], **kwargs)["score"])

    diff = whole(rows_a) - whole(rows_b)
    if len(rows_a) < 2:
        return diff, None
    # The same seed draws the same question indices for both runs (bootstrap_scores), which makes it paired.
    d = np.array(bootstrap_scores(name, rows_a, **kw)) - np.array(bootstrap_scores(name, rows_b, **kw))
    d = d[np.isfinite(d)]
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
    return diff, [float(lo), float(hi)]


def paired_mean_difference(values_a: Sequence[float], values_b: Sequence[float], level: float = 0.95,
                           resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, list[float] | None]:
    """Mean of A minus mean of B over paired per-question values (a share of the answer's seconds kept, say),
    with the paired percentile bootstrap interval drawn exactly as :func:`paired_difference` draws questions."""
    import numpy as np

    if len(values_a) != len(values_b):
        raise DataError(f"paired_mean_difference: {len(values_a)} and {len(values_b)} values are not paired")
    d = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, dtype=np.float64)
    if not d.size:
        return float("nan"), None
    if d.size < 2:
        return float(d.mean()), None
    idx = _resample_indices(d.size, resamples, seed)
    lo, hi = np.quantile(d[idx].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), [float(lo), float(hi)]


def aggregate(rows: Sequence[dict], task_metrics: dict[str, str | Sequence[str]]) -> dict:
    """Score rows of ``{"task", "prediction", "reference", ["choices"]}`` with each task's metric(s).

    Returns ``{"per_task": {task: {metric: result}}, "overall": {metric: {"pooled": result over every row of
    every task using that metric, "macro": mean of the per-task scores, "tasks": [...]}}}``. Pooled and macro
    differ when tasks have different sizes; both are reported so neither hides a small task. Each per-task and
    pooled result carries ``ci95``: the 95% percentile bootstrap interval over its rows (1,000 resamples, seed 0),
    so two runs on the same rows can be told apart from noise.
    """
    by_task: dict[str, list[dict]] = {}
    for i, row in enumerate(rows):
        for key in ("task", "prediction", "reference"):
            if key not in row:
                raise DataError(f"row {i} has no {key!r}")
        if row["task"] not in task_metrics:
            raise ConfigError(f"row {i}: task {row['task']!r} has no metric; known tasks: {', '.join(sorted(task_metrics))}")
        by_task.setdefault(row["task"], []).append(row)

    def score(metric: str, task_rows: list[dict]) -> dict:
        kw = {}
        if any("choices" in r for r in task_rows):
            kw["choices"] = [r.get("choices") for r in task_rows]
        result = get_metric(metric)([r["prediction"] for r in task_rows], [r["reference"] for r in task_rows], **kw)
        return dict(result, ci95=bootstrap_interval(metric, task_rows))

    per_task: dict[str, dict] = {}
    metric_tasks: dict[str, list[str]] = {}
    for task, task_rows in by_task.items():
        names = [task_metrics[task]] if isinstance(task_metrics[task], str) else list(task_metrics[task])
        per_task[task] = {m: score(m, task_rows) for m in names}
        for m in names:
            metric_tasks.setdefault(m, []).append(task)
    overall = {}
    for m, tasks in metric_tasks.items():
        pooled_rows = [r for t in tasks for r in by_task[t]]
        overall[m] = dict(
            pooled=score(m, pooled_rows),
            macro=sum(per_task[t][m]["score"] for t in tasks) / len(tasks),
            tasks=sorted(tasks),
        )
    return dict(per_task=per_task, overall=overall)

"""Metrics on hand-made cases whose values are worked out by hand in the comments."""

import math

import pytest

from speechpress.errors import ConfigError, DataError
from speechpress.evaluate import METRICS, aggregate, normalize_basic, normalize_english, parse_choice, parse_number
from speechpress.evaluate.metrics import bleu, cer, mc_accuracy, numeric_accuracy, rouge, wer


# ------------------------------------------------------------------------------------------- normalizer
# Pairs from the test-suite of openai/whisper (tests/test_normalizer.py), so normalize_english is checked against
# Whisper's normalizer itself, not against our reading of it.
WHISPER_PAIRS = [
    ("two", "2"),
    ("thirty one", "31"),
    ("five twenty four", "524"),
    ("nineteen ninety nine", "1999"),
    ("twenty nineteen", "2019"),
    ("two point five million", "2500000"),
    ("four point two billions", "4200000000s"),
    ("200 thousand", "200000"),
    ("200 thousand dollars", "$200000"),
    ("$20 million", "$20000000"),
    ("\u20ac52.4 million", "\u20ac52400000"),
    ("\u00a377 thousands", "\u00a377000s"),
    ("two double o eight", "2008"),
    ("three thousand twenty nine", "3029"),
    ("forty three thousand two hundred sixty", "43260"),
    ("forty three thousand two hundred and sixty", "43260"),
    ("nineteen fifties", "1950s"),
    ("thirty first", "31st"),
    ("thirty three thousand and three hundred and thirty third", "33333rd"),
    ("three billion", "3000000000"),
    ("millions", "1000000s"),
    ("july third twenty twenty", "july 3rd 2020"),
    ("august twenty sixth twenty twenty one", "august 26th 2021"),
    ("3 14", "3 14"),
    ("3.14", "3.14"),
    ("3 point 2", "3.2"),
    ("3 point 14", "3.14"),
    ("fourteen point 4", "14.4"),
    ("two point two five dollars", "$2.25"),
    ("two hundred million dollars", "$200000000"),
    ("$20.1 million", "$20100000"),
    ("ninety percent", "90%"),
    ("seventy six per cent", "76%"),
    ("double oh seven", "007"),
    ("double zero seven", "007"),
    ("nine one one", "911"),
    ("nine double one", "911"),
    ("one triple oh one", "10001"),
    ("two thousandth", "2000th"),
    ("thirty two thousandth", "32000th"),
    ("minus 500", "-500"),
    ("positive twenty thousand", "+20000"),
    ("two dollars and seventy cents", "$2.70"),
    ("3 cents", "\u00a23"),
    ("$0.36", "\u00a236"),
    ("three euros and sixty five cents", "\u20ac3.65"),
    ("three and a half million", "3500000"),
    ("forty eight and a half dollars", "$48.5"),
    ("b747", "b 747"),
    ("10 th", "10th"),
    ("10th", "10th"),
    # spelling table and text rules
    ("mobilisation", "mobilization"),
    ("cancelation", "cancellation"),
    ("Let's", "let us"),
    ("he's like", "he is like"),
    ("she's been like", "she has been like"),
    ("10km", "10 km"),
    ("10mm", "10 mm"),
    ("RC232", "rc 232"),
    ("Mr. Park visited Assoc. Prof. Kim Jr.", "mister park visited associate professor kim junior"),
]


@pytest.mark.parametrize("text, expected", WHISPER_PAIRS)
def test_english_normalizer_is_whispers(text, expected):
    assert normalize_english(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [  # cases our former home-made normalizer got differently (it wrote "19 84", kept "colour", dropped nothing)
        ("Nineteen eighty four", "1984"),
        ("The colour of honour", "the color of honor"),
        ("[laughter] Um, yes", "yes"),
        ("Caf\u00e9 na\u00efve", "cafe naive"),
        ("", ""),
    ],
)
def test_english_normalizer_cases(text, expected):
    assert normalize_english(text) == expected


def test_basic_normalizer_keeps_hangul_and_cjk_intact():
    assert normalize_basic("\uc548\ub155\ud558\uc138\uc694, \u4e16\u754c! [noise]") == "\uc548\ub155\ud558\uc138\uc694 \u4e16\u754c"


# -------------------------------------------------------------------------------------------------- WER
def test_wer_one_substitution_in_four_words():
    r = wer(["the cat sat down"], ["the cat sit down"])
    assert r["score"] == 0.25
    assert (r["substitutions"], r["deletions"], r["insertions"], r["hits"]) == (1, 0, 0, 3)


def test_wer_ignores_case_punctuation_and_number_words():
    assert wer(["There are 25 cats."], ["there are twenty-five cats"])["score"] == 0.0
    # Without normalization: "There"/"there", "25"/"twenty-five", "cats."/"cats" -> 3 substitutions in 4 words.
    assert wer(["There are 25 cats."], ["there are twenty-five cats"], normalizer=None)["score"] == 0.75


def test_wer_is_pooled_over_rows_not_averaged():
    # Row 1: 1 deletion of 2 words; row 2: 0 errors of 8 words -> 1/10 pooled (the mean of rates would be 0.25).
    r = wer(["hello", "a b c d e f g h"], ["hello world", "a b c d e f g h"])
    assert r["score"] == pytest.approx(0.1)
    assert r["deletions"] == 1 and r["reference_units"] == 10


def test_wer_insertion_and_empty_reference():
    assert wer(["a b c"], ["a b"])["score"] == 0.5  # 1 insertion / 2
    r = wer(["uh", "hi there"], ["", "hi"])  # the filler normalizes away; "there" is inserted
    assert r["insertions"] == 1 and r["reference_units"] == 1 and r["score"] == 1.0
    assert math.isinf(wer(["hello"], [""])["score"])


def test_cer():
    assert cer(["abcd"], ["abed"])["score"] == 0.25
    # "ab cd" vs "abcd": the space is an inserted character -> 1/4; without spaces it matches.
    assert cer(["ab cd"], ["abcd"])["score"] == 0.25
    assert cer(["ab cd"], ["abcd"], remove_spaces=True)["score"] == 0.0
    assert cer(["\u4f60\u597d\u5417"], ["\u4f60\u597d"], remove_spaces=True)["score"] == 0.5


# -------------------------------------------------------------------------------------- multiple choice
CHOICES = ["Paris", "London", "Berlin", "Rome"]


@pytest.mark.parametrize(
    "response, expected",
    [
        ("B", 1),
        ("(B)", 1),
        ("B.", 1),
        ("b", 1),
        ("The answer is B", 1),
        ("answer: b", 1),
        ("Answer: (C)", 2),
        ("The correct option is D.", 3),
        ("B) London", 1),
        ("(C) Berlin is the capital", 2),
        ("I would pick (D) here.", 3),
        ("london", 1),
        ("I think it is Berlin.", 2),
        ("B. Paris", 1),  # the label wins over the option text
        ("Paris or London", None),  # two options named
        ("Answer: A or B", None),  # hedging between letters
        ("The answer is B, not option C", None),  # two explicit letters
        ("E", None),  # beyond four options
        ("I am not sure", None),
        ("", None),
    ],
)
def test_parse_choice(response, expected):
    assert parse_choice(response, CHOICES) == expected


def test_parse_choice_article_is_not_a_letter_and_longer_option_wins():
    assert parse_choice("The answer is a dog", ["a cat", "a dog"]) == 1
    assert parse_choice("It was dark red.", ["red", "dark red", "blue"]) == 1
    assert parse_choice("red, not dark red", ["red", "dark red", "blue"]) is None


def test_mc_accuracy_counts_unparsed_as_wrong():
    preds = ["B", "The answer is C", "no idea", "Rome", "A or B"]
    refs = ["B", "Paris", 2, "D", "A"]  # letter, option text, index, letter
    r = mc_accuracy(preds, refs, choices=[CHOICES] * 5)
    # Row 1 right, row 2 wrong (C vs A), row 3 unparsed, row 4 right (Rome = D), row 5 unparsed.
    assert (r["correct"], r["unparsed"], r["n"]) == (2, 2, 5)
    assert r["score"] == 0.4 and r["unparsed_rate"] == 0.4


def test_mc_accuracy_bad_reference_and_missing_choices():
    with pytest.raises(DataError):
        mc_accuracy(["A"], ["Madrid"], choices=[CHOICES])
    with pytest.raises(DataError):
        mc_accuracy(["A"], ["A"])


# ------------------------------------------------------------------------------------------------- BLEU
def test_bleu_perfect_match_is_100_and_case_insensitive_by_default():
    r = bleu(["The cat sat on the mat."], ["the cat sat on the mat."])
    assert r["score"] == pytest.approx(100.0)
    assert "case:lc" in r["signature"] and "tok:13a" in r["signature"] and "nrefs:1" in r["signature"]
    assert bleu(["The cat sat on the mat."], ["the cat sat on the mat."], lowercase=False)["score"] < 100


def test_bleu_hand_computed():
    # hyp "the cat sat on a mat" vs ref "the cat sat on the mat" (6 tokens each, BP = 1):
    # 1-gram 5/6, 2-gram 3/5, 3-gram 2/4, 4-gram 1/3 -> BLEU = 100 * (5/6 * 3/5 * 1/2 * 1/3) ** (1/4).
    expected = 100 * (5 / 6 * 3 / 5 * 1 / 2 * 1 / 3) ** 0.25
    r = bleu(["the cat sat on a mat"], ["the cat sat on the mat"])
    assert r["score"] == pytest.approx(expected, abs=1e-9)
    assert r["brevity_penalty"] == 1.0


def test_bleu_no_overlap_is_zero_and_multiple_references():
    assert bleu(["xyz qqq"], ["the cat sat"])["score"] == 0.0
    r = bleu(["the cat sat on the mat"], [["a dog lay there", "the cat sat on the mat"]])
    assert r["score"] == pytest.approx(100.0) and "nrefs:2" in r["signature"]


# ------------------------------------------------------------------------------------------------ ROUGE
def test_rouge_l_hand_computed():
    # pred 7 words, ref 6, LCS "the cat was under the bed" = 6 -> P = 6/7, R = 1, F1 = 2*6/7/(6/7+1) = 12/13.
    r = rouge(["The cat was found under the bed."], ["the cat was under the bed"])
    assert r["rouge_l"] == pytest.approx(12 / 13)
    # Bigrams: pred has 6, ref 5, common 4 (the cat, cat was, under the, the bed) -> P 4/6, R 4/5, F1 = 8/11.
    assert r["rouge2"] == pytest.approx(8 / 11)


def test_rouge_l_order_matters_and_mean_over_rows():
    # "b a" vs "a b": LCS 1 -> F1 0.5; second row identical -> 1.0; mean 0.75. ROUGE-1 ignores order: 1.0.
    r = rouge(["b a", "same words"], ["a b", "same words"])
    assert r["rouge_l"] == pytest.approx(0.75)
    assert r["rouge1"] == pytest.approx(1.0)
    # Re-pinned when ROUGE moved to rouge-score: it scores two empty texts 0 (the hand-written version said 1).
    assert rouge([""], [""])["rouge_l"] == 0.0 and rouge(["x"], [""])["rouge_l"] == 0.0


def test_rouge_stems_as_rouge_score_does():
    # Porter stemmer on: "cats running" and "cat runs" share both stems -> every ROUGE F1 is 1.
    r = rouge(["cats running"], ["cat runs"])
    assert r["rouge1"] == 1.0 and r["rouge_l"] == 1.0 and r["stemmer"] is True
    assert rouge(["cats running"], ["cat runs"], use_stemmer=False)["rouge1"] == 0.0


# ---------------------------------------------------------------------------------------------- numeric
@pytest.mark.parametrize(
    "text, expected",
    [
        ("There are three speakers.", 3),
        ("3 speakers", 3),
        ("twenty-one", 21),
        ("I count one hundred and five words", 105),
        ("-2 degrees", -2),
        ("1,000 people", 1000),
        ("version 2.5 then 7", 2.5),
        ("two or three", 2),
        ("no speakers", None),
        ("", None),
        (4, 4),
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_numeric_accuracy_longspeech_rates():
    preds = ["There are 3 speakers", "four", "I cannot tell", "2 people"]
    refs = ["3", 4, "three", "5"]
    r = numeric_accuracy(preds, refs)
    # correct 2 of 4; parsed 3 of 4 -> N.A 0.5, P.R 0.75, Pr 2/3, M.R 0.25.
    assert r["accuracy"] == 0.5 and r["parsability_rate"] == 0.75
    assert r["post_parse_precision"] == pytest.approx(2 / 3) and r["misunderstanding_rate"] == 0.25
    assert numeric_accuracy(["2.9"], ["3"], tolerance=0.2)["accuracy"] == 1.0
    with pytest.raises(DataError):
        numeric_accuracy(["3"], ["many"])


# --------------------------------------------------------------------------------- registry, aggregation
def test_registry_and_length_mismatch():
    assert sorted(METRICS) == ["bleu", "cer", "emotion_accuracy", "f1_macro", "f1_macro_answers", "f1_macro_options",
                               "f1_weighted_answers", "language_detection", "mc_accuracy", "numeric_accuracy",
                               "rouge_l", "wer", "wer_utterance_mean"]
    with pytest.raises(DataError):
        METRICS["wer"](["a"], ["a", "b"])
    with pytest.raises(DataError):
        METRICS["bleu"]([], [])
    with pytest.raises(ConfigError):
        wer(["a"], ["a"], normalizer="french")


def test_aggregate_per_task_and_overall():
    rows = [
        dict(task="asr_a", prediction="the cat sat down", reference="the cat sit down"),  # 1 error / 4
        dict(task="asr_b", prediction="a b c d e f", reference="a b c d e f"),  # 0 / 6
        dict(task="mcq", prediction="B", reference="B", choices=["x", "y"]),
        dict(task="mcq", prediction="huh", reference="A", choices=["x", "y"]),
    ]
    out = aggregate(rows, {"asr_a": "wer", "asr_b": "wer", "mcq": ["mc_accuracy"]})
    assert out["per_task"]["asr_a"]["wer"]["score"] == 0.25
    assert out["per_task"]["mcq"]["mc_accuracy"]["unparsed"] == 1
    assert out["overall"]["wer"]["pooled"]["score"] == pytest.approx(0.1)  # 1 / 10 words
    assert out["overall"]["wer"]["macro"] == pytest.approx(0.125)  # (0.25 + 0) / 2
    assert out["overall"]["mc_accuracy"]["macro"] == 0.5
    with pytest.raises(ConfigError):
        aggregate([dict(task="other", prediction="a", reference="a")], {"asr_a": "wer"})


# ------------------------------------------------------------------------------------------- bootstrap
from speechpress.evaluate.metrics import ROW_PARTS, bootstrap_interval, bootstrap_scores  # noqa: E402

BOOT_ROWS = {
    "wer": [dict(prediction=p, reference=r) for p, r in [
        ("the cat sat", "the cat sat"), ("a dog ran home", "a dog ran far home"), ("", "nothing heard here"),
        ("one two three four", "one too three for"), ("extra words", ""), ("yes", "yes no")]],
    "cer": [dict(prediction=p, reference=r) for p, r in [("abc", "abd"), ("hello", "hello"), ("xy", "xyz"), ("", "q")]],
    "mc_accuracy": [dict(prediction=p, reference=r, choices=["red", "blue", "green"]) for p, r in [
        ("A", "A"), ("B", "A"), ("green", "C"), ("no idea", "B"), ("(B)", "B")]],
    "numeric_accuracy": [dict(prediction=p, reference=r) for p, r in [("3", "3"), ("four", "4"), ("none", "2"), ("7", "8")]],
    "rouge_l": [dict(prediction=p, reference=r) for p, r in [("the cat sat", "a cat sat down"), ("hi", "hello"),
                                                              ("same words", "same words")]],
}


@pytest.mark.parametrize("name", sorted(BOOT_ROWS))
def test_bootstrap_row_parts_equal_rescoring_each_resample(name):
    # The fast path (per-row numerators and denominators summed over a resample) must give exactly what scoring
    # each resample with the metric itself gives, for the same draws.
    assert name in ROW_PARTS
    rows = BOOT_ROWS[name]
    fast = bootstrap_scores(name, rows, resamples=40, seed=3)
    slow = bootstrap_scores(name, rows, resamples=40, seed=3, rescore=True)
    finite = [(f, s) for f, s in zip(fast, slow) if math.isfinite(s)]
    assert len(finite) >= 35
    assert [f for f, _ in finite] == pytest.approx([s for _, s in finite], abs=1e-12)
    # And the whole-set "resample" (each row once) is the metric on all rows.
    kw = {"choices": [r["choices"] for r in rows]} if "choices" in rows[0] else {}
    whole = METRICS[name]([r["prediction"] for r in rows], [r["reference"] for r in rows], **kw)["score"]
    num_of, den_of = ROW_PARTS[name]
    singles = [METRICS[name]([r["prediction"]], [r["reference"]], **({"choices": [r["choices"]]} if kw else {}))
               for r in rows]
    assert sum(num_of(s) for s in singles) / sum(den_of(s) for s in singles) == pytest.approx(whole, abs=1e-12)


def test_bootstrap_interval_known_cases():
    right = [dict(prediction="A", reference="A", choices=["x", "y"])] * 20
    assert bootstrap_interval("mc_accuracy", right) == [1.0, 1.0]  # no resample can miss
    half = [dict(prediction="A", reference="A" if i % 2 else "B", choices=["x", "y"]) for i in range(200)]
    lo, hi = bootstrap_interval("mc_accuracy", half)
    # Binomial: sd of a mean of 200 fair coins = 0.5 / sqrt(200) = 0.0354, so the 95% interval is about +-0.069.
    assert 0.42 < lo < 0.45 and 0.55 < hi < 0.58
    assert bootstrap_interval("mc_accuracy", right[:1]) is None
    # Seeded: the same rows give the same interval twice.
    assert bootstrap_interval("wer", BOOT_ROWS["wer"]) == bootstrap_interval("wer", BOOT_ROWS["wer"])


def test_aggregate_carries_intervals():
    rows = [dict(task="t", prediction="A" if i % 3 else "B", reference="A", choices=["x", "y"]) for i in range(30)]
    out = aggregate(rows, {"t": "mc_accuracy"})
    task, pooled = out["per_task"]["t"]["mc_accuracy"], out["overall"]["mc_accuracy"]["pooled"]
    assert task["ci95"] == pooled["ci95"]
    assert task["ci95"][0] < task["score"] < task["ci95"][1]


def test_paired_difference_cancels_what_the_questions_share():
    from speechpress.evaluate.metrics import paired_difference

    def mc(correct):
        return [dict(id=f"q{i}", prediction="A" if ok else "B", reference="A", choices=["x", "y"]) for i, ok in enumerate(correct)]

    # B answers the first 30 of 60 right; A answers the same 30 and 6 more. Separately their intervals overlap
    # (0.5 and 0.6 on 60 rows), but paired, A is never worse on any resample: the interval sits above zero.
    b = mc([i < 30 for i in range(60)])
    a = mc([i < 36 for i in range(60)])
    diff, ci = paired_difference("mc_accuracy", a, b)
    assert diff == pytest.approx(0.1)
    assert 0 < ci[0] < 0.1 < ci[1] < 0.2
    lo_a, hi_a = bootstrap_interval("mc_accuracy", a)
    lo_b, hi_b = bootstrap_interval("mc_accuracy", b)
    assert lo_a < hi_b  # the separate intervals overlap
    # Identical runs differ by exactly zero on every resample; order of rows does not matter (matched by id).
    assert paired_difference("mc_accuracy", a, list(reversed(a))) == (0.0, [0.0, 0.0])
    with pytest.raises(DataError):
        paired_difference("mc_accuracy", a, a[:-1])


def test_paired_mean_difference_draws_the_questions_paired_difference_draws():
    from speechpress.evaluate.metrics import get_metric, paired_difference, paired_mean_difference

    # ROUGE-L of a run is the mean of its rows' ROUGE-L: on per-row values both paths must give the same
    # difference and the same interval (continuous values, so a different draw of questions would show).
    words = "the red fox ran over a lazy brown dog near the old mill at noon".split()
    ref = " ".join(words)
    rows = [[dict(id=f"q{i}", prediction=" ".join(words[: low + (i * 7) % 10]), reference=ref) for i in range(40)]
            for low in (5, 2)]
    per_row = [[get_metric("rouge_l")([r["prediction"]], [r["reference"]])["score"] for r in run] for run in rows]
    expected = paired_difference("rouge_l", *rows)
    got = paired_mean_difference(*per_row)
    assert got[0] == pytest.approx(expected[0]) and got[1] == pytest.approx(expected[1])
    assert 0 < got[1][0] < got[0] < got[1][1]  # three more words on every row: A is better on every resample
    assert paired_mean_difference([0.5], [0.25]) == (0.25, None)
    with pytest.raises(DataError):
        paired_mean_difference([1.0, 0.0], [1.0])


def test_bootstrap_of_a_metric_without_row_parts_rescoring_fewer_resamples():
    from speechpress.evaluate.metrics import RESCORE_RESAMPLES

    rows = [dict(prediction=p, reference=r) for p, r in [("the cat sat on the mat", "the cat sat on a mat"),
                                                         ("a b c d", "a b c e"), ("hello there world", "hello world")]]
    assert "bleu" not in ROW_PARTS
    assert len(bootstrap_scores("bleu", rows)) == RESCORE_RESAMPLES
    assert len(bootstrap_scores("bleu", rows, rescore=True, resamples=30)) == 30
    lo, hi = bootstrap_interval("bleu", rows)
    assert 0 <= lo <= hi <= 100

"""Metrics on hand-made cases whose values are worked out by hand in the comments."""

import math

import pytest

from speechpress.errors import ConfigError, DataError
from speechpress.evaluate import METRICS, aggregate, normalize_basic, normalize_english, parse_choice, parse_number
from speechpress.evaluate.metrics import bleu, cer, lcs_length, mc_accuracy, numeric_accuracy, rouge, wer


# ------------------------------------------------------------------------------------------- normalizer
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!", "hello world"),
        ("Twenty-five", "25"),
        ("one hundred and three", "103"),
        ("two thousand and twenty", "2020"),
        ("one two three", "1 2 3"),
        ("nineteen eighty four", "19 84"),
        ("three million people", "3000000 people"),
        ("I have 1,000 dollars, 3.5 kg.", "i have 1000 dollars 3.5 kg"),
        ("[laughter] Um, yes <unk> (inaudible)", "yes"),
        ("Don't, won't, can't, it's, we're, I'll", "do not will not can not its we are i will"),
        ("Caf\u00e9 na\u00efve", "cafe naive"),
        ("fifty two and six", "52 and 6"),
        ("   many   \n spaces\t", "many spaces"),
        ("", ""),
    ],
)
def test_english_normalizer(text, expected):
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
def test_lcs_length():
    assert lcs_length("abcbdab", "bdcaba") == 4  # the textbook example (CLRS): "bcba"
    assert lcs_length([], ["a"]) == 0


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
    assert rouge([""], [""])["rouge_l"] == 1.0 and rouge(["x"], [""])["rouge_l"] == 0.0


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
    assert sorted(METRICS) == ["bleu", "cer", "mc_accuracy", "numeric_accuracy", "rouge_l", "wer"]
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

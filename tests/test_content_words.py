"""benchmarks/content_words.py: recall of names, places and numbers, on cases whose answer is known by construction."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "content_words.py"


def _module():
    spec = importlib.util.spec_from_file_location("content_words", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recall_counts_each_class_and_uses_a_hypothesis_word_once():
    cw = _module()
    classes = cw.word_classes()
    rows = [dict(reference="Tuesday, teapot, Lisbon, Maria Lopez, eighteen eighty five.",
                 prediction="tuesday teapot oslo maria 1885"),
            dict(reference="The budget for the Echo project is two thousand dollars.",
                 prediction="The budget for the Echo Echo project is four thousand dollars.")]
    got = cw.recall(rows, classes)
    assert got["date"] == {"recall": 1.0, "words": 1}
    assert got["item"] == {"recall": 1.0, "words": 1}
    assert got["place"] == {"recall": 0.0, "words": 1}
    assert got["name"] == {"recall": 0.5, "words": 2}  # Maria heard, Lopez not
    assert got["project"] == {"recall": 1.0, "words": 1}
    # "eighteen eighty five" and "two thousand" are normalized to digits: 1885 heard, 2000 not (4000 instead).
    assert got["number"] == {"recall": 0.5, "words": 2}
    assert got["other"]["words"] == 6 and got["other"]["recall"] == 1.0  # the budget for the project is
    # A word said twice needs to be heard twice.
    twice = cw.recall([dict(reference="Oslo, Oslo.", prediction="Oslo")], classes)
    assert twice["place"] == {"recall": 0.5, "words": 2}

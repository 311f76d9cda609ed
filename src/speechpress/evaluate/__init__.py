"""Evaluation: text normalizers and task metrics (WER, CER, BLEU, ROUGE-L, multiple-choice and numeric accuracy)."""

from speechpress.evaluate.metrics import METRICS, aggregate, get_metric, parse_choice, parse_number
from speechpress.evaluate.normalize import normalize_basic, normalize_english

__all__ = ["METRICS", "aggregate", "get_metric", "normalize_basic", "normalize_english", "parse_choice", "parse_number"]

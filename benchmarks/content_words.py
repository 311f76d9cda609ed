"""Which words a transcription run heard: recall of the corpus's content words (names, places, items, projects,
rooms, number words) against the template words around them, from the rows of `speechpress eval`.

WER mixes the words a sentence template predicts ("the budget for the ... project is ...") with the ones only the
audio can give ("Wavelength", "two thousand"); a model that has learned the templates scores a fair WER and still
hears nothing a question asks about. This splits the two: for each reference word of a class, is it in the
hypothesis (bag of words after the English normalizer, each hypothesis word used once)?

    python benchmarks/content_words.py results/speechpress-smol/dictation-test60/phase3/identity \\
        results/speechpress-smol/utterance-context-phase4.json [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from speechpress.data.grammar import _ONES, _TENS
from speechpress.data.vocab import FEMALE_NAMES, ITEMS, MALE_NAMES, MONTHS, PLACES, PROJECTS, ROOMS, SURNAMES, WEEKDAYS
from speechpress.evaluate.metrics import get_normalizer
from speechpress.io import atomic_write_json

NUMBER_WORDS = set(_ONES) | {t for t in _TENS if t != "_"} | {"hundred", "thousand", "oh"}


def word_classes() -> dict[str, str]:
    """Normalized word -> class; a word of two pools keeps the first class listed here."""
    norm = get_normalizer("english")
    table: dict[str, str] = {}
    pools = [("name", FEMALE_NAMES + MALE_NAMES + SURNAMES), ("place", PLACES), ("item", ITEMS), ("project", PROJECTS),
             ("room", [w for r in ROOMS for w in r.split("_")]), ("number", sorted(NUMBER_WORDS)),
             ("date", WEEKDAYS + MONTHS)]
    for cls, words in pools:
        for word in words:
            for token in norm(word).split():
                table.setdefault(token, cls)
    return table


def recall(rows: list[dict], classes: dict[str, str]) -> dict:
    norm = get_normalizer("english")
    hit, total = Counter(), Counter()
    for row in rows:
        hyp = Counter(norm(row.get("prediction") or "").split())
        for word in norm(row["reference"]).split():
            cls = "number" if any(c.isdigit() for c in word) else classes.get(word, "other")  # numbers become digits ($2000)
            total[cls] += 1
            if hyp[word] > 0:
                hyp[word] -= 1
                hit[cls] += 1
    return {cls: {"recall": round(hit[cls] / total[cls], 3), "words": total[cls]} for cls in sorted(total)}


def transcripts(run: Path) -> list[tuple[str, list[dict]]]:
    """(label, rows with reference and prediction) from an eval run folder, a benchmarks/asr_wer.py --out file, or
    a benchmarks/utterance_context.py --out file (its two ways, in context and alone, as two entries)."""
    if (run / "predictions.jsonl").is_file():
        rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(str(run), [r for r in rows if r.get("metric") == "wer"])]
    if run.is_file() and run.suffix == ".json":
        data = json.loads(run.read_text(encoding="utf-8"))
        if "predictions" in data:
            return [(str(run), data["predictions"])]
        if "transcripts" in data:
            return [(f"{run} ({way})", [dict(reference=t["reference"], prediction=t[way]) for t in data["transcripts"]])
                    for way in ("in_context", "alone")]
    print(f"{run}: not an eval run folder (predictions.jsonl) nor an asr_wer / utterance_context JSON", file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="eval run folders (predictions.jsonl), or asr_wer.py / utterance_context.py --out files")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()
    classes = word_classes()
    result = {}
    for run in args.runs:
        for label, rows in transcripts(Path(run)):
            result[label] = recall(rows, classes)
            cells = ", ".join(f"{cls} {v['recall']:.2f} ({v['words']})" for cls, v in result[label].items())
            print(f"{label}: {len(rows)} utterances; recall {cells}")
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()

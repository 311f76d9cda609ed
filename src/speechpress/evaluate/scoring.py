"""Scoring a run's rows: which registered metric scores each example, and the per-task aggregate."""

from __future__ import annotations


def scoring_metric(example) -> str | None:
    """The metrics-registry name that scores an example, or None (unscored: LLM-judge tasks, open text answers)."""
    from speechpress.evaluate.metrics import parse_number

    m = example.metric
    if example.metadata.get("score_metric"):  # a loader's benchmark-specific scorer (AudioMarathon F1, LongSpeech)
        return example.metadata["score_metric"]
    if m in ("wer", "cer", "bleu"):
        return m
    if m == "rouge":
        return "rouge_l"
    if m in ("accuracy", "f1") and example.choices:
        # AudioMarathon scores by macro-F1 over letters; the registry has no F1, so accuracy stands in (said so in
        # metrics.json's notes).
        return "mc_accuracy"
    if m == "accuracy" and parse_number(example.answer) is not None:
        return "numeric_accuracy"
    return None


def score_rows(rows: list[dict]) -> tuple[dict, dict, list[str]]:
    """(aggregate() result, unscored counts per task, notes) for finished rows."""
    from speechpress.evaluate.metrics import aggregate

    scored, task_metrics, unscored, notes = [], {}, {}, set()
    by_task_metrics: dict[str, set] = {}
    for row in rows:
        if row.get("score_metric"):
            by_task_metrics.setdefault(row["task"], set()).add(row["score_metric"])
    for row in rows:
        metric = row.get("score_metric")
        if not metric:
            unscored[row["task"]] = unscored.get(row["task"], 0) + 1
            continue
        # A task scored by two metrics (LongSpeech ASR: wer, or cer for CJK rows) is split by metric.
        task = row["task"] if len(by_task_metrics[row["task"]]) == 1 else f"{row['task']}/{metric}"
        task_metrics[task] = metric
        item = dict(task=task, prediction=row["prediction"], reference=row["reference"])
        if row.get("choices"):
            item["choices"] = row["choices"]
        scored.append(item)
        if row.get("metric") == "f1" and metric == "mc_accuracy":
            notes.add(f"{row['task']}: macro-F1 is not implemented; scored as multiple-choice accuracy")
    for task in unscored:
        notes.add(f"{task}: no automatic metric (LLM judge or open-text answer); predictions kept, not scored")
    return (aggregate(scored, task_metrics) if scored else {"per_task": {}, "overall": {}}), unscored, sorted(notes)

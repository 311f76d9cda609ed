"""A benchmark as a sweep sees it: a name, where it came from, its format and task, and its examples, resolved
from whatever the user typed (a manifest, a synth corpus or split folder, ``NAME:PATH`` for a published layout)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from speechpress.errors import DataError

NAMED_FORMATS = ("manifest", "longspeech", "audiomarathon", "spiral", "hf")


@dataclass
class Benchmark:
    name: str
    source: str
    format: str
    task: str | None
    examples: list

    def describe(self) -> dict:
        return dict(name=self.name, source=self.source, format=self.format, task=self.task, rows=len(self.examples))


def slug(text: str) -> str:
    """A folder-safe name: run folders are named after benchmarks, models and press labels."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-.") or "x"


def resolve_benchmark(spec: str, task: str | None = None, split: str = "test", name: str | None = None,
                      skip_bad: bool = False) -> Benchmark:
    """A benchmark from ``spec``: a manifest / benchmark file, a ``speechpress synth`` corpus folder (its
    ``<split>.jsonl``) or split folder (``corpus/test``), or ``NAME:PATH`` with NAME one of the loaders
    (manifest, longspeech, audiomarathon, spiral; ``--task`` picks the LongSpeech / AudioMarathon task)."""
    from speechpress.data.loaders import load_examples

    fmt, path = "auto", Path(spec)
    head, sep, rest = spec.partition(":")
    if sep and head.lower() in NAMED_FORMATS and rest:
        fmt, path = head.lower(), Path(rest)
    if not path.exists() and fmt != "hf":  # hf: a hub id or PATH#SPEC, checked by its loader
        raise DataError(
            f"unknown benchmark {spec!r}: not a file or folder, and not NAME:PATH with NAME one of "
            f"{', '.join(NAMED_FORMATS)}"
        )
    label = name
    if path.is_dir() and fmt in ("auto", "manifest"):
        if (path / f"{split}.jsonl").is_file():  # a synth corpus root
            path, fmt = path / f"{split}.jsonl", "manifest"
        elif path.with_suffix(".jsonl").is_file():  # a synth split folder: corpus/test -> corpus/test.jsonl
            path, fmt = path.with_suffix(".jsonl"), "manifest"
        elif fmt == "manifest" or not ((path / "LongSpeechQA").is_dir() or _detected(path) == "audiomarathon"):
            raise DataError(f"{path}: a folder without {split}.jsonl (a `speechpress synth` corpus) or LongSpeechQA/")
    examples = load_examples(path, format=fmt, task=task, split=split, skip_bad=skip_bad)
    if skip_bad and examples.skipped:
        print(f"skipped {examples.skipped} bad row(s) of {path}", file=sys.stderr)
    if task:  # --task filters any benchmark (a manifest's task, or a loader's source task code)
        want = str(task).lower()
        examples = [e for e in examples if want in (e.task.lower(), str(e.metadata.get("source_task", "")).lower())]
    if not examples:
        raise DataError(f"{path}: the benchmark holds no examples" + (f" of task {task!r}" if task else ""))
    ids = [e.id for e in examples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: example id {dup!r} appears more than once; resuming needs unique ids")
    resolved = fmt if fmt != "auto" else _detected(path)
    if label is None:
        if path.is_dir():
            label = f"{resolved}-{task or path.name}"
        elif resolved == "manifest":
            label = f"{path.parent.name}-{path.stem}"
        else:
            label = f"{resolved}-{task or path.stem}"
    source = str(path.resolve()) if path.exists() else str(path)  # hf: a hub id or PATH#SPEC stays as given
    return Benchmark(slug(label), source, resolved, task, list(examples))


def _detected(path: Path) -> str:
    from speechpress.data.loaders import detect_format

    return detect_format(path)

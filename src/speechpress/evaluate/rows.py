"""A run folder's row files: one JSON line per answered question, appended and fsynced so a crash loses nothing,
read back tolerating a crash's half-written last line, merged from every rank's shard."""

from __future__ import annotations

import json
import os
from pathlib import Path

from speechpress.io import atomic_write_text

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
CONFIG = "config.json"
SHARDS = "shards"


def read_rows(path: Path) -> tuple[dict[str, dict], bool]:
    """Rows of one JSONL file by id, and whether any line was unreadable (a crash's half-written tail)."""
    rows, bad = {}, False
    if not path.is_file():
        return rows, bad
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        last = i == len(lines) - 1  # no newline after it: never finished
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad = True
            continue
        if last or not isinstance(row, dict) or "id" not in row:
            bad = True
            continue
        rows.setdefault(row["id"], row)
    return rows, bad


def repair(path: Path) -> dict[str, dict]:
    """Read this process' own row file and, if a line is unreadable, rewrite it without that line (atomically)."""
    rows, bad = read_rows(path)
    if bad:
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows.values()))
    return rows


def all_rows(run_dir: Path) -> dict[str, dict]:
    """Every finished row of a run folder: the merged file and every shard (other ranks may be writing)."""
    rows, _ = read_rows(run_dir / PREDICTIONS)
    for shard in sorted((run_dir / SHARDS).glob("*.jsonl")) if (run_dir / SHARDS).is_dir() else []:
        for key, row in read_rows(shard)[0].items():
            rows.setdefault(key, row)
    return rows


class RowWriter:
    """Append one JSON line and fsync it: once ``write`` returns, a crash cannot lose that row."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()

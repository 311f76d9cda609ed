"""The synthetic long-form corpus: ``speechpress synth`` writes recordings (``recording.py``) and the benchmark
questions about them (``questions.py``) into a split folder and its manifest.

A recording is written as one FLAC file plus a JSON sidecar (its timeline); both are atomic, so a rerun skips every
finished recording and an interrupted run leaves nothing half-written. The split manifest is rebuilt from the
sidecars at the end.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from speechpress.data.questions import examples_for
from speechpress.data.recording import ALL_GENRES, GENRES, VERSION, build_recording, q, recording_id
from speechpress.data.schema import SYNTH_TASKS
from speechpress.data.tts import SAMPLE_RATE
from speechpress.data.vocab import SPLITS
from speechpress.errors import ConfigError
from speechpress.io import atomic_write_json, atomic_write_text


def plan_durations(durations, hours: float | None) -> list[float]:
    """One recording per duration, or cycle through them until ``hours`` of audio are planned."""
    durations = [float(d) for d in durations]
    if not durations or any(d < 1 for d in durations):
        raise ConfigError(f"durations must be >= 1 second, got {durations}")
    if hours is None:
        return durations
    if hours <= 0:
        raise ConfigError(f"--hours must be > 0, got {hours}")
    plan, total, i = [], 0.0, 0
    while total < hours * 3600 - 1e-9:
        plan.append(durations[i % len(durations)])
        total += plan[-1]
        i += 1
    return plan


def parse_duration(text: str) -> float:
    """'30', '90s', '5m', '1.5h' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise ConfigError(f"cannot read duration {text!r} (use e.g. 30, 90s, 5m, 1h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@dataclass
class SynthReport:
    manifest: Path
    recordings: int
    reused: int
    examples: int
    audio_seconds: float
    bytes: int


def synthesize(out: str | os.PathLike, seed: int, split: str = "train", durations=(30, 90, 300),
               hours: float | None = None, tasks=None, jobs: int | None = None, progress: bool = False,
               genres=None) -> SynthReport:
    """Write ``out/<split>/*.flac`` + sidecars and the manifest ``out/<split>.jsonl``; skips finished recordings.

    ``genres`` (default: the four of every published seed) is what each recording's genre is drawn from; the same
    seed with other genres gives other recordings, so give them their own ``out`` folder."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    tasks = list(SYNTH_TASKS) if not tasks else list(tasks)
    unknown = [t for t in tasks if t not in SYNTH_TASKS]
    if unknown:
        raise ConfigError(f"unknown task(s) {', '.join(unknown)}; synth makes: {', '.join(SYNTH_TASKS)}")
    genres = tuple(GENRES if not genres else genres)
    unknown = [g for g in genres if g not in ALL_GENRES]
    if unknown:
        raise ConfigError(f"unknown genre(s) {', '.join(unknown)}; choose from {', '.join(ALL_GENRES)}")
    plan = plan_durations(durations, hours)
    out = Path(out)
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    jobs = max(1, jobs or min(4, os.cpu_count() or 1))
    from tqdm import tqdm

    rows: list[dict] = []
    reused = size = 0
    bar = tqdm(total=sum(plan), unit="s", desc=f"synth {split}", disable=None if progress else True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
    with ThreadPoolExecutor(max_workers=jobs) as executor, bar:
        for index, duration in enumerate(plan):
            rid = recording_id(seed, split, index)
            flac, side = folder / f"{rid}.flac", folder / f"{rid}.json"
            rec = _finished(side, flac, seed, split, index, duration, genres)
            if rec is None:
                rec = build_recording(seed, split, index, duration, flac, executor, bar, genres)
                rec["audio"] = flac.name
                atomic_write_json(side, rec)
                rec = json.loads(side.read_text(encoding="utf-8"))  # key order as stored, so reruns match
            else:
                reused += 1
                bar.update(duration)
            size += flac.stat().st_size
            rows += examples_for(rec, f"{split}/{flac.name}", tasks)
    manifest = out / f"{split}.jsonl"
    atomic_write_text(manifest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return SynthReport(manifest, len(plan), reused, len(rows), float(sum(plan)), size)


def _finished(side: Path, flac: Path, seed: int, split: str, index: int, duration: float, genres) -> dict | None:
    """The sidecar of a recording this exact request already produced, else None (so it is rebuilt)."""
    if not (side.is_file() and flac.is_file()):
        return None
    try:
        rec = json.loads(side.read_text(encoding="utf-8"))
        frames = sf.info(str(flac)).frames
    except (OSError, ValueError, RuntimeError):
        return None
    same = (rec.get("seed"), rec.get("split"), rec.get("index"), rec.get("version")) == (seed, split, index, VERSION)
    same = same and rec.get("genre") in genres
    if same and frames == int(round(duration * SAMPLE_RATE)) and rec.get("duration") == q(frames / SAMPLE_RATE):
        return rec
    return None

"""Readers for every dataset format we evaluate on, all returning the one ``Example`` type.

Formats: our manifest (``speechpress synth``), LongSpeech (``LongSpeechQA/<task>/<split>.jsonl`` chat rows),
AudioMarathon (a JSON list of ``choice_a..choice_d`` records, or DESED's ``{"tasks": [...]}``) and SPIRAL-style
multiple-choice JSONL. A bad row is a ``DataError`` naming the file and line; with ``skip_bad=True`` it is counted
in ``ExampleSet.errors`` instead, so one broken line does not sink a 30,000-row benchmark.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from speechpress.audio import header_seconds
from speechpress.data.schema import LETTERS, METRICS, REQUIRED, TASKS, Example, check_span
from speechpress.errors import AudioError, DataError

FORMATS = ("manifest", "longspeech", "audiomarathon", "spiral", "hf")
LONGSPEECH_TASKS = {
    "asr": "asr_long", "translation": "translation", "language_detection": "language_detection",
    "content_separation": "content_separation", "emotionqa": "emotion", "speaker_count": "speaker_count",
    "temporal_relative_qa": "temporal_qa", "summary": "summary",
}
# LongSpeech tasks the paper scores with its own label metrics (strict/relaxed emotion accuracy; D.A/M.R/D.E)
LONGSPEECH_SCORERS = {"emotion": "emotion_accuracy", "language_detection": "language_detection"}
CJK = {"zh", "ja", "ko", "cmn", "yue", "chinese", "japanese", "korean"}
AUDIOMARATHON_TASKS = {
    "asr": "asr_long", "scr": "content_reasoning", "ser": "entity_recognition", "asc": "scene_classification",
    "mc": "music_genre", "sed": "sound_events", "er": "emotion", "sd": "deepfake_detection", "sar": "speaker_age",
    "sgr": "speaker_gender",
}
_END_TOLERANCE = 0.01  # seconds: rounding in stored offsets/durations


class ExampleSet(list):
    """A list of examples that also remembers the rows it skipped (``errors``), for ``skip_bad`` runs."""

    def __init__(self, *args):
        super().__init__(*args)
        self.errors: list[str] = []

    @property
    def skipped(self) -> int:
        return len(self.errors)


class _Reader:
    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.out = ExampleSet()
        self._lengths: dict[Path, float] = {}

    def fail(self, err: DataError) -> None:
        if not self.skip_bad:
            raise err
        self.out.errors.append(str(err))

    def run(self, make) -> None:
        try:
            self.out.append(make())
        except DataError as err:
            self.fail(err)

    def audio(self, where: str, path: Path, offset, duration) -> tuple[float, float]:
        """Check the audio exists and the requested stretch lies inside it; returns (offset, duration)."""
        offset, duration = check_span(where, offset, duration)
        if not path.is_file():
            raise DataError(f"{where}: audio file not found: {path}")
        if path not in self._lengths:
            try:
                self._lengths[path] = header_seconds(path)
            except AudioError as err:
                raise DataError(f"{where}: {err}") from None
        length = self._lengths[path]
        if offset >= length:
            raise DataError(f"{where}: offset {offset:g} s is past the end of the audio ({length:.3f} s, {path.name})")
        if duration is None:
            return float(offset), length - offset
        if offset + duration > length + _END_TOLERANCE:
            raise DataError(f"{where}: offset + duration = {offset + duration:g} s is past the end of the audio "
                            f"({length:.3f} s, {path.name})")
        return float(offset), float(duration)


def _resolve(base: Path, rel: str) -> Path:
    p = Path(rel)
    return (p if p.is_absolute() else base / p).resolve()


def _not_utf8(path: Path, lineno: int, byte: int, column: int) -> DataError:
    return DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{byte:02x} at byte {column} of the line)")


def _text_lines(path: Path):
    """(line number, text) per line, decoded one at a time so that a stray byte costs its own line, not the file;
    an undecodable line comes back as a DataError."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield lineno, _not_utf8(path, lineno, raw[err.start], err.start + 1)


def _jsonl(path: Path):
    """(line number, row) for each non-blank line; malformed lines come back as a DataError to raise or count."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    for lineno, line in _text_lines(path):
        where = f"{path}:{lineno}"
        if isinstance(line, DataError):
            yield where, line
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            yield where, DataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})")
            continue
        if not isinstance(row, dict):
            yield where, DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            continue
        yield where, row


def _feed(reader: _Reader, path: Path, build):
    for where, row in _jsonl(path):
        if isinstance(row, DataError):
            reader.fail(row)
        else:
            reader.run(lambda w=where, r=row: build(w, r))
    return reader.out


def _letter(where: str, answer, choices: list[str]) -> str:
    """A letter for the right option, whether the file gives a letter, an index or the option's text."""
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
        return LETTERS[answer]
    if isinstance(answer, str):
        a = answer.strip()
        if a.strip("().").upper() in LETTERS[: len(choices)] and len(a.strip("().")) == 1:
            return a.strip("().").upper()
        if a in choices:
            return LETTERS[choices.index(a)]
    raise DataError(f"{where}: answer {answer!r} is not one of the {len(choices)} choices")


# ------------------------------------------------------------------------------------------------ manifest

def load_manifest(path: str | os.PathLike, skip_bad: bool = False) -> ExampleSet:
    """Our own JSONL manifest; ``audio`` is relative to the manifest's folder."""
    path = Path(path)
    reader = _Reader(skip_bad)

    def build(where: str, row: dict) -> Example:
        missing = [k for k in REQUIRED if row.get(k) is None]
        if missing:
            raise DataError(f"{where}: missing field(s): {', '.join(missing)}")
        task, metric = row["task"], row["metric"]
        if task not in TASKS:
            raise DataError(f"{where}: unknown task {task!r} (known: {', '.join(TASKS)})")
        if metric not in METRICS:
            raise DataError(f"{where}: unknown metric {metric!r} (known: {', '.join(METRICS)})")
        choices = row.get("choices")
        if choices is not None:
            if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
                raise DataError(f"{where}: choices must be null or a list of at least 2 strings")
            answer = _letter(where, row["answer"], choices)
        else:
            answer = str(row["answer"])
        audio = _resolve(path.parent, str(row["audio"]))
        offset, duration = reader.audio(where, audio, row.get("offset", 0.0), row.get("duration"))
        meta = row.get("metadata") or {}
        if not isinstance(meta, dict):
            raise DataError(f"{where}: metadata must be an object")
        return Example(str(row["id"]), audio, offset, duration, task, str(row["prompt"]), choices, answer, metric, meta)

    return _feed(reader, path, build)


# ------------------------------------------------------------------------------------------------ LongSpeech

def longspeech_file(root: str | os.PathLike, task: str, split: str = "test") -> Path:
    return Path(root) / "LongSpeechQA" / task / f"{split}.jsonl"


def load_longspeech(path: str | os.PathLike, task: str | None = None, split: str = "test",
                    audio_root: str | os.PathLike | None = None, skip_bad: bool = False) -> ExampleSet:
    """A local LongSpeech copy: give the dataset root plus ``task`` (folder name, e.g. ``ASR``), or a JSONL file.

    Audio paths in the rows are relative to the dataset root (``LongSpeech_p1/wavs/...``).
    """
    path = Path(path)
    if path.is_dir():
        if not task:
            raise DataError(f"{path}: a LongSpeech root needs a task folder name (e.g. ASR, summary)")
        file, root = longspeech_file(path, task, split), path
    else:
        file = path
        root = file.parents[2] if file.parent.parent.name == "LongSpeechQA" else file.parent
        task = task or (file.parent.name if file.parent.parent.name == "LongSpeechQA" else None)
        split = file.stem
    root = Path(audio_root) if audio_root else root
    reader = _Reader(skip_bad)

    def build(where: str, row: dict) -> Example:
        messages = row.get("messages")
        if isinstance(messages, str):  # some exports (and `datasets` tables) store the chat as a JSON string
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: messages is a string but not JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(messages, list) or len(messages) < 2 or not all(isinstance(m, dict) for m in messages):
            raise DataError(f"{where}: missing field: messages (a list of at least a user and an assistant turn)")
        users = [m for m in messages if m.get("role") == "user"]
        answers = [m for m in messages if m.get("role") == "assistant"]
        audios = [m["audio"] for m in users if isinstance(m.get("audio"), str) and m["audio"]]
        if not audios:
            raise DataError(f"{where}: missing field: audio (no user turn carries an audio path)")
        if not answers or not isinstance(answers[-1].get("content"), str):
            raise DataError(f"{where}: missing field: the assistant turn's content (the reference answer)")
        prompt = "\n".join(m["content"] for m in users if isinstance(m.get("content"), str)).strip()
        if not prompt:
            raise DataError(f"{where}: missing field: the user turn's content (the prompt)")
        name = str(row.get("task") or task or "")
        canon = LONGSPEECH_TASKS.get(name.lower())
        if canon is None:
            raise DataError(f"{where}: unknown task {name!r} (LongSpeech tasks: ASR, translation, "
                            "language_detection, content_separation, emotionQA, speaker_count, "
                            "Temporal_Relative_QA, summary)")
        language = row.get("language")
        metric = ("cer" if str(language).lower() in CJK else "wer") if canon == "asr_long" else TASKS[canon].metric
        audio = _resolve(root, audios[0])
        offset, duration = reader.audio(where, audio, 0.0, None)
        meta = {"source": "longspeech", "source_task": name, "language": language, "split": split,
                "line": int(where.rsplit(":", 1)[1])}
        reference = answers[-1]["content"]
        if canon in LONGSPEECH_SCORERS:  # scored as the paper does; a reference it cannot read is a bad row
            from speechpress.evaluate.metrics import parse_emotion, parse_language

            parse = parse_emotion if canon == "emotion" else parse_language
            if parse(reference) is None:
                raise DataError(f"{where}: reference {reference[:60]!r} names no "
                                f"{'LongSpeech emotion label' if canon == 'emotion' else 'known language'}")
            meta["score_metric"] = LONGSPEECH_SCORERS[canon]
        if len(audios) > 1:
            meta["extra_audio"] = [str(_resolve(root, a)) for a in audios[1:]]
        return Example(f"longspeech-{name}-{split}-{meta['line']}", audio, offset, duration, canon, prompt, None,
                       reference, metric, meta)

    return _feed(reader, file, build)


# ------------------------------------------------------------------------------------------------ AudioMarathon

def _json_records(path: Path):
    """(where, record) for each record of a JSON list or of DESED's ``{"tasks": [...]}``, with line numbers."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:  # one JSON document: the whole file is unreadable, named at the bad line
        lineno = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise _not_utf8(path, lineno, data[err.start], column) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
    dec = json.JSONDecoder()

    def ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def array_items(i: int):
        i = ws(i) + 1  # past '['
        while True:
            i = ws(i)
            if text[i] == "]":
                return
            obj, end = dec.raw_decode(text, i)
            yield f"{path}:{text.count(chr(10), 0, i) + 1}", obj
            i = ws(end)
            if text[i] == ",":
                i += 1

    if isinstance(doc, list):
        yield from array_items(0)
        return
    if isinstance(doc, dict) and isinstance(doc.get("tasks"), list):
        i = ws(0) + 1
        while True:
            i = ws(i)
            key, i = dec.raw_decode(text, i)
            i = ws(i) + 1  # past ':'
            i = ws(i)
            if key == "tasks":
                yield from array_items(i)
                return
            _, i = dec.raw_decode(text, i)
            i = ws(i) + 1  # past ','
    raise DataError(f"{path}:1: expected a JSON list of records or an object with a \"tasks\" list")


# Each task as published (github DabDans/AudioMarathon, the Qwen2.5-Omni scripts in src/Qwen_2.5_Omni/Others):
# its index file, where audio paths start ("wav": <folder>/wav/<path>), and the F1 its script reports.
AUDIOMARATHON_LAYOUT = {
    "mc": ("music_genre_classification_meta.json", "wav", "f1_macro_options"),      # GTZAN: labels A..D
    "sgr": ("gender_id_task_meta.json", "wav", "f1_weighted_answers"),              # VoxCeleb gender: weighted
    "sar": ("age_classification_task_meta.json", "wav", "f1_macro_answers"),        # VoxCeleb age: 5 options
    "asc": ("acoustic_scene_task_meta.json", "", "f1_macro"),                       # TAU
    "scr": ("race_benchmark.json", "", "f1_macro_options"),                         # RACE: labels A..D
    "ser": ("merged_audio_data.json", "", "f1_macro"),                              # SLUE
    "sed": ("desed_sound_event_detection_task.json", "", "f1_macro"),               # DESED
    "er": ("audio_emotion_dataset.json", "", "f1_macro"),                           # VESUS
    "sd": (None, "", "f1_macro"),                                                   # HAD: real/ and fake/ folders
    "asr": (None, "", "wer_utterance_mean"),                                        # LibriSpeech tree
}
AUDIOMARATHON_FILES = {f: code for code, (f, _, _) in AUDIOMARATHON_LAYOUT.items() if f}
HAD_QUESTION = ("Listen to this audio clip carefully. Is this audio completely authentic (real) or does it contain any "
                "artificially synthesized segments (fake)?")


def _am_code(path: Path, task: str | None) -> str:
    if task:
        code = str(task).lower()
        if code not in AUDIOMARATHON_TASKS:
            code = next((k for k, v in AUDIOMARATHON_TASKS.items() if v == task), "")
        if code:
            return code
        raise DataError(f"{path}: unknown AudioMarathon task {task!r} (codes: "
                        f"{', '.join(k.upper() for k in AUDIOMARATHON_TASKS)})")
    if path.name in AUDIOMARATHON_FILES:
        return AUDIOMARATHON_FILES[path.name]
    if path.is_dir():  # a task folder: its published index file, or HAD's real/ + fake/
        found = [code for f, code in AUDIOMARATHON_FILES.items() if (path / f).is_file()]
        if len(found) == 1:
            return found[0]
        if not found and ((path / "real").is_dir() or (path / "fake").is_dir()):
            return "sd"
    raise DataError(f"{path}: AudioMarathon files need a task code (e.g. SGR, SED, SER)")


def load_audiomarathon(path: str | os.PathLike, task: str | None = None, audio_root: str | os.PathLike | None = None,
                       skip_bad: bool = False) -> ExampleSet:
    """One AudioMarathon task in its published layout: the task's index file (or the folder holding it), HAD's
    ``real/``+``fake/`` folder, or LibriSpeech's speaker/chapter tree. ``task`` is its code (MC, SGR, ...; inferred
    from a published file name) or our task name.

    Rows are kept or dropped as the official scripts do (VESUS drops persons 2 and 10's "happy" rows), and each
    row names the F1 its script reports (``metadata["score_metric"]``). Not reproduced: the gender and HAD scripts'
    random class balancing (unseeded file order; we keep every row).
    """
    path = Path(path)
    code = _am_code(path, task)
    canon = AUDIOMARATHON_TASKS[code]
    index, subdir, scorer = AUDIOMARATHON_LAYOUT[code]
    if code == "sd":
        return _load_had(path, audio_root, skip_bad, scorer)
    if code == "asr" and path.is_dir():
        return _load_librispeech(path, skip_bad, scorer)
    if path.is_dir() and index:
        path = path / index
    if audio_root:
        root = Path(audio_root)
    else:
        root = path.parent / subdir if subdir else path.parent
    reader = _Reader(skip_bad)
    records = _jsonl(path) if path.suffix == ".jsonl" else _json_records(path)
    for n, (where, rec) in enumerate(records):
        if isinstance(rec, DataError) or not isinstance(rec, dict):
            reader.fail(rec if isinstance(rec, DataError) else DataError(f"{where}: expected a JSON object"))
            continue
        if code == "er" and str(rec.get("person_id", "")).strip() in ("2", "10") \
                and str(rec.get("emotion_label", "")).strip().lower() == "happy":
            continue  # VESUS_qwen2.5.py drops these rows

        def build(where=where, rec=rec, n=n) -> Example:
            keys = ("audio_path", "question", "answer") if code == "scr" else ("path", "question", "answer_gt")
            missing = [k for k in keys if not rec.get(k) and rec.get(k) != 0]
            if missing:
                raise DataError(f"{where}: missing field(s): {', '.join(missing)}")
            gold = rec[keys[2]]
            if code == "scr":
                choices = [str(c) for c in rec.get("options") or []] if isinstance(rec.get("options"), list) else []
            elif isinstance(rec.get("choices"), dict):
                choices = [str(rec["choices"].get(k, "")) for k in "ABCDE" if k in rec["choices"]]
            else:
                choices = [str(rec[f"choice_{k}"]) for k in "abcde" if rec.get(f"choice_{k}") not in (None, "")]
            if canon == "asr_long":
                choices, answer = None, str(gold)
            elif len(choices) < 2:
                raise DataError(f"{where}: missing field(s): choices (choice_a..choice_e, options or a choices object)")
            else:
                lowered = [c.strip().lower() for c in choices]  # gender/age give the answer as option text
                if isinstance(gold, str) and gold.strip().lower() in lowered and len(gold.strip()) > 1:
                    answer = LETTERS[lowered.index(gold.strip().lower())]
                else:
                    answer = _letter(where, gold, choices)
            audio = _resolve(root, str(rec[keys[0]]))
            offset, duration = reader.audio(where, audio, 0.0, None)
            extra = {k: v for k, v in rec.items() if k not in keys + ("choices", "options")
                     and not k.startswith("choice_")}
            meta = dict(extra, source="audiomarathon", source_task=code.upper(), score_metric=scorer)
            rid = rec.get("uniq_id", rec.get("id", n))
            return Example(f"audiomarathon-{code.upper()}-{rid}", audio, offset, duration, canon,
                           str(rec["question"]), choices, answer, "wer" if canon == "asr_long" else "f1", meta)

        reader.run(build)
    return reader.out


def _load_had(root: Path, audio_root, skip_bad: bool, scorer: str) -> ExampleSet:
    """HAD: ``real/*.wav`` and ``fake/*.wav``, no index; the question and options are the official script's."""
    root = Path(audio_root) if audio_root else root
    if not (root / "real").is_dir() and not (root / "fake").is_dir():
        raise DataError(f"{root}: a HAD folder needs real/ and fake/ subfolders")
    reader = _Reader(skip_bad)
    for label in ("real", "fake"):
        for wav in sorted((root / label).glob("*.wav")):
            def build(wav=wav, label=label) -> Example:
                offset, duration = reader.audio(str(wav), wav.resolve(), 0.0, None)
                return Example(f"audiomarathon-SD-{label}-{wav.stem}", wav.resolve(), offset, duration,
                               "deepfake_detection", HAD_QUESTION, ["real", "fake"], "A" if label == "real" else "B",
                               "f1", {"source": "audiomarathon", "source_task": "SD", "score_metric": scorer})
            reader.run(build)
    return reader.out


def _load_librispeech(root: Path, skip_bad: bool, scorer: str, split: str = "test-clean") -> ExampleSet:
    """LibriSpeech-long: ``[<split>/]<speaker>/<chapter>/<id>.flac`` with ``<id>.txt`` or ``<spk>-<chap>.trans.txt``."""
    if (root / split).is_dir():
        root = root / split
    reader = _Reader(skip_bad)
    for flac in sorted(root.glob("*/*/*.flac")):
        chapter = flac.parent
        trans = chapter / f"{chapter.parent.name}-{chapter.name}.trans.txt"

        def build(flac=flac, trans=trans) -> Example:
            own = flac.with_suffix(".txt")
            text, where = None, str(own)
            if own.is_file():
                text = own.read_text(encoding="utf-8").strip()
            elif trans.is_file():
                for lineno, line in _text_lines(trans):
                    if isinstance(line, str) and line.split(" ", 1)[0] == flac.stem:
                        text, where = line.split(" ", 1)[1].strip() if " " in line else "", f"{trans}:{lineno}"
                        break
            if not text:
                raise DataError(f"{where if own.is_file() else trans}: no transcript for {flac.name}")
            offset, duration = reader.audio(where, flac.resolve(), 0.0, None)
            return Example(f"audiomarathon-ASR-{flac.stem}", flac.resolve(), offset, duration, "asr_long",
                           "Transcribe the speech.", None, text, "wer",
                           {"source": "audiomarathon", "source_task": "ASR", "score_metric": scorer,
                            "speaker_id": chapter.parent.name, "chapter_id": chapter.name})
        reader.run(build)
    if not reader.out and not reader.out.errors:
        raise DataError(f"{root}: no <speaker>/<chapter>/*.flac files (a LibriSpeech tree)")
    return reader.out


# ------------------------------------------------------------------------------------------------ SPIRAL

def load_spiral(path: str | os.PathLike, audio_root: str | os.PathLike | None = None,
                skip_bad: bool = False) -> ExampleSet:
    """SPIRAL-style 4-way retrieval questions, one JSON object a line.

    Keys: ``audio`` (or ``audio_path``/``path``), ``question``, ``choices`` (list, or an A..D object; ``options``
    also accepted), ``answer`` (letter, 0-based index or the option's text), optional ``id`` and ``metadata``.
    """
    path = Path(path)
    root = Path(audio_root) if audio_root else path.parent
    reader = _Reader(skip_bad)

    def build(where: str, row: dict) -> Example:
        audio_key = next((k for k in ("audio", "audio_path", "path") if row.get(k)), None)
        raw = row.get("choices", row.get("options"))
        missing = [k for k, ok in (("audio", audio_key), ("question", row.get("question")), ("choices", raw),
                                   ("answer", row.get("answer") is not None)) if not ok]
        if missing:
            raise DataError(f"{where}: missing field(s): {', '.join(missing)}")
        choices = [str(raw[k]) for k in sorted(raw)] if isinstance(raw, dict) else [str(c) for c in raw]
        if len(choices) < 2:
            raise DataError(f"{where}: choices must hold at least 2 options")
        answer = _letter(where, row["answer"], choices)
        audio = _resolve(root, str(row[audio_key]))
        offset, duration = reader.audio(where, audio, row.get("offset", 0.0), row.get("duration"))
        meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
        rid = row.get("id", f"spiral-{where.rsplit(':', 1)[1]}")
        return Example(str(rid), audio, offset, duration, "sir", str(row["question"]), choices, answer, "accuracy",
                       dict(meta, source="spiral"))

    return _feed(reader, path, build)


# ------------------------------------------------------------------------------------------------ dispatch

def detect_format(path: str | os.PathLike) -> str:
    path = Path(path)
    if _hf_layout(path):
        return "hf"
    if path.is_dir() and (path / "LongSpeechQA").is_dir():
        return "longspeech"
    if path.is_dir() and ((path / "real").is_dir() or any((path / f).is_file() for f in AUDIOMARATHON_FILES)):
        return "audiomarathon"
    if path.is_dir():
        return "longspeech"
    if path.suffix == ".json" or path.name in AUDIOMARATHON_FILES or (path / "real").is_dir() or \
            any((path / f).is_file() for f in AUDIOMARATHON_FILES):
        return "audiomarathon"
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    for _, line in _text_lines(path):  # the first readable row decides; a bad one is reported by the loader
        if isinstance(line, DataError) or not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            return "manifest"
        if isinstance(row, dict) and "messages" in row:
            return "longspeech"
        if isinstance(row, dict) and "metric" not in row and "question" in row:
            return "spiral"
        return "manifest"
    return "manifest"


def _hf_layout(path: Path) -> bool:
    """A ``save_to_disk`` folder, a parquet / arrow file, or a folder of parquet files (a Hugging Face release)."""
    if path.is_file():
        return path.suffix in (".parquet", ".arrow")
    if not path.is_dir():
        return False
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file() or \
        any(next(path.glob(pattern), None) for pattern in ("*.parquet", "data/*.parquet", "*/*.parquet"))


def load_examples(path: str | os.PathLike, format: str = "auto", task: str | None = None,
                  split: str = "test", audio_root=None, skip_bad: bool = False) -> ExampleSet:
    """Any supported dataset into examples; ``format='auto'`` guesses from the path and first row."""
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "manifest":
        return load_manifest(path, skip_bad=skip_bad)
    if fmt == "longspeech":
        return load_longspeech(path, task=task, split=split, audio_root=audio_root, skip_bad=skip_bad)
    if fmt == "audiomarathon":
        return load_audiomarathon(path, task, audio_root=audio_root, skip_bad=skip_bad)
    if fmt == "spiral":
        return load_spiral(path, audio_root=audio_root, skip_bad=skip_bad)
    if fmt == "hf":  # a Hugging Face dataset folder / file or hub id, with an optional #column spec
        from speechpress.data.hf import load_hf

        return load_hf(path, task=task, split=split, audio_root=audio_root, skip_bad=skip_bad)
    raise DataError(f"unknown dataset format {format!r} (choose from auto, {', '.join(FORMATS)})")

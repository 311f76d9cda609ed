"""Hugging Face ``datasets`` releases as benchmarks: a local folder (parquet / arrow / csv / json files, or a
``save_to_disk`` copy) or a hub id, read row by row and mapped to ``Example`` by a small column spec.

* **Lazily**: plain files and hub ids are opened with ``load_dataset(..., streaming=True)``, a ``save_to_disk``
  folder with ``load_from_disk`` (memory-mapped); only one row's audio is held at a time.
* **Audio** is never decoded by ``datasets`` (its decoder needs torchcodec and FFmpeg): the audio column is cast
  to ``Audio(decode=False)`` and each row's stored file bytes are written, unchanged, to a cache folder named by
  their SHA-256 (atomic, written once, shared by every row and run that holds the same bytes). A decoded
  ``{"array", "sampling_rate"}`` value is written as a float32 WAV (the samples exactly); a path-only value or a
  plain string column is a file path, relative to a local dataset's folder. Examples then carry a path like
  every other loader's, so nothing downstream changes.
* **The spec** (``HFColumns``) says which column holds what. ``speechpress`` (our manifest schema as columns) and
  ``generic`` (``audio``, ``question``, ``answer``) ship; any field can be set on the command line
  (``hf:PATH#spec,key=value,...``) or in a YAML file (``hf:PATH#my-spec.yaml``). We ship no spec for
  LongSpeech's or AudioMarathon's hub releases: LongSpeech's is its JSONL + WAV layout (read it with
  ``longspeech:``), and the columns of AudioMarathon's ``test.csv`` have not been seen (docs/eval.md).

A bad row is a ``DataError`` naming the dataset, split and row index (counted instead with ``skip_bad``); a spec
naming a column the dataset lacks is a ``DataError`` before any row is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechpress.data.loaders import ExampleSet, _letter, _Reader
from speechpress.data.schema import LETTERS, METRICS, TASKS, Example
from speechpress.errors import DataError

CACHE_ENV = "SPEECHPRESS_AUDIO_CACHE"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".opus"}
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class HFColumns:
    """Which column of a dataset holds each field of an ``Example`` (None: no such column).

    ``audio``: a ``datasets.Audio`` column (stored bytes, a path, or a decoded array + sampling_rate) or a string
    column of file paths. ``choices``: one list column, or several option columns (``choice_a+choice_b+...``;
    empty options are dropped). ``answer``: text, or for multiple choice a letter, a 0-based index or the option's
    text. Without a ``task`` column every row has ``default_task`` (or the ``--task`` given); ``task_names``
    maps a column's values to our task names. Without a ``question`` column every row asks ``default_question``.
    ``metric`` defaults to the task's metric; ``score_metric`` names a benchmark's own scorer for every row.
    ``metadata``: a column holding a dict (or a JSON string of one) merged into the example's metadata;
    ``keep``: the columns copied into metadata (None: every other column holding JSON-like values).
    """

    name: str = "generic"
    audio: str = "audio"
    question: str | None = "question"
    answer: str = "answer"
    choices: tuple[str, ...] = ()
    task: str | None = None
    id: str | None = None
    offset: str | None = None
    duration: str | None = None
    metric: str | None = None
    metadata: str | None = None
    keep: tuple[str, ...] | None = None
    default_task: str | None = None
    default_question: str | None = None
    task_names: dict = field(default_factory=dict)
    score_metric: str | None = None

    def columns(self) -> dict[str, str]:
        """Field -> column, for every column the spec names."""
        named = {f: getattr(self, f) for f in ("audio", "question", "answer", "task", "id", "offset", "duration",
                                               "metric", "metadata")}
        out = {f: c for f, c in named.items() if c}
        out.update({f"choices[{i}]": c for i, c in enumerate(self.choices)})
        return out


SPECS: dict[str, HFColumns] = {
    "generic": HFColumns(),
    # a speechpress manifest (docs/data.md) as dataset columns, with the audio in an Audio column
    "speechpress": HFColumns(name="speechpress", audio="audio", question="prompt", answer="answer",
                             choices=("choices",), task="task", id="id", offset="offset", duration="duration",
                             metric="metric", metadata="metadata", keep=()),
}
_FIELDS = {f.name: f for f in dataclasses.fields(HFColumns)}


# ------------------------------------------------------------------------------------------------ the spec

def parse_spec(text: str | None) -> HFColumns:
    """``name``, ``file.yaml``, ``key=value`` items or a mix, comma-separated: a base spec (default ``generic``)
    then overrides, e.g. ``speechpress,question=text`` or ``audio=wav,answer=label,default_task=asr_long``.
    ``choices`` and ``keep`` take ``+``-joined columns; an empty value clears a column."""
    spec, overrides = SPECS["generic"], {}
    for item in [t.strip() for t in (text or "").split(",") if t.strip()]:
        key, sep, value = item.partition("=")
        if not sep:
            spec = _base_spec(item)
            continue
        key = key.strip()
        if key not in _FIELDS or key == "task_names":
            raise DataError(f"hf column spec: unknown key {key!r} (known: {', '.join(k for k in _FIELDS if k != 'task_names')};"
                            " task_names only in a YAML spec)")
        value = value.strip()
        overrides[key] = tuple(v for v in value.split("+") if v) if key in ("choices", "keep") else (value or None)
    return _replace(spec, overrides, "hf column spec")


def _base_spec(item: str) -> HFColumns:
    if item in SPECS:
        return SPECS[item]
    path = Path(item)
    if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
        return load_spec_file(path)
    raise DataError(f"hf column spec: {item!r} is not a shipped spec ({', '.join(SPECS)}), a YAML file or key=value")


def load_spec_file(path: str | os.PathLike) -> HFColumns:
    """A YAML (or JSON) mapping of ``HFColumns`` fields, optionally starting from ``base: <shipped spec>``."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataError(f"{path}: cannot read the column spec ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not a YAML column spec ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a column spec is a mapping of field: column")
    data = dict(data)
    base = SPECS.get(str(data.pop("base", "generic")))
    if base is None:
        raise DataError(f"{path}: unknown base spec (known: {', '.join(SPECS)})")
    unknown = [k for k in data if k not in _FIELDS]
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(map(str, unknown))} (known: base, {', '.join(_FIELDS)})")
    for key in ("choices", "keep"):
        if isinstance(data.get(key), str):
            data[key] = (data[key],)
        elif isinstance(data.get(key), list):
            data[key] = tuple(str(c) for c in data[key])
    if "task_names" in data and not isinstance(data["task_names"], dict):
        raise DataError(f"{path}: task_names must map column values to task names")
    data.setdefault("name", path.stem)
    return _replace(base, data, str(path))


def _replace(spec: HFColumns, values: dict, where: str) -> HFColumns:
    for key, value in values.items():
        if key in ("choices", "keep") or key == "task_names" or value is None:
            continue
        if not isinstance(value, str):
            raise DataError(f"{where}: {key} must be a column name or text, got {value!r}")
    spec = dataclasses.replace(spec, **values)
    for required in ("audio", "answer"):
        if not getattr(spec, required):
            raise DataError(f"{where}: the spec needs an {required} column")
    for name in [spec.default_task, *spec.task_names.values()]:
        if name is not None and name not in TASKS:
            raise DataError(f"{where}: unknown task {name!r} (known: {', '.join(TASKS)})")
    return spec


# ------------------------------------------------------------------------------------------------ opening

def split_source(source: str | os.PathLike) -> tuple[str, str | None]:
    """``PATH_OR_ID#SPEC`` -> (PATH_OR_ID, SPEC or None)."""
    text = str(source)
    where, sep, spec = text.rpartition("#")
    return (where, spec) if sep else (text, None)


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError("reading Hugging Face datasets needs the `datasets` package: "
                        "pip install 'speechpress[hf]'") from None
    return datasets


def open_dataset(source: str, split: str = "test"):
    """(rows, column names or None, base folder for relative audio paths or None, label) for a local folder or
    file, or a hub id; rows is a lazily read (streaming or memory-mapped) dataset."""
    datasets = _datasets()
    path = Path(source)
    if path.exists():
        base = path if path.is_dir() else path.parent
        try:
            if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
                ds = datasets.load_from_disk(str(path))  # a save_to_disk copy: memory-mapped arrow
                if isinstance(ds, datasets.DatasetDict):
                    ds = _pick_split(ds, split, source)
            elif path.is_file():
                kind = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json",
                        ".jsonl": "json"}.get(path.suffix)
                if kind is None:
                    raise DataError(f"{source}: not a parquet, arrow, csv or json file")
                ds = datasets.load_dataset(kind, data_files=str(path), split="train", streaming=True)
            else:
                ds = _pick_split(datasets.load_dataset(str(path), streaming=True), split, source)
        except DataError:
            raise
        except Exception as err:  # datasets raises many kinds for a folder it cannot read
            raise DataError(f"{source}: cannot open as a Hugging Face dataset ({type(err).__name__}: {err})") from None
        return ds, _column_names(ds), base.resolve(), path.resolve().name if path.is_dir() else path.stem
    if not _HUB_ID.match(str(source)):
        raise DataError(f"{source}: no such file or folder, and not a hub id (owner/name)")
    if datasets.config.HF_HUB_OFFLINE:
        raise DataError(f"{source}: not a local folder, and the Hugging Face Hub is offline (HF_HUB_OFFLINE): "
                        f"download it where there is a network (hf download {source} --repo-type dataset "
                        f"--local-dir DIR) and give hf:DIR")
    try:
        ds = datasets.load_dataset(str(source), split=split, streaming=True)
    except Exception as err:
        raise DataError(f"{source}: cannot read split {split!r} from the Hugging Face Hub ({type(err).__name__}: "
                        f"{err}); offline? download it (hf download {source} --repo-type dataset --local-dir DIR) "
                        f"and give hf:DIR") from None
    return ds, _column_names(ds), None, str(source).replace("/", "--")


def _pick_split(dd, split: str, source: str):
    if split in dd:
        return dd[split]
    if len(dd) == 1:  # one split (a folder of data files is "train"): that is the benchmark
        return next(iter(dd.values()))
    raise DataError(f"{source}: no split {split!r} (splits: {', '.join(dd)})")


def _column_names(ds) -> list[str] | None:
    names = getattr(ds, "column_names", None)
    if names:
        return list(names)
    features = getattr(ds, "features", None)
    return list(features) if features else None


# ------------------------------------------------------------------------------------------------ audio

def cache_dir(given: str | os.PathLike | None = None) -> Path:
    """Where audio held inside a dataset is written: ``given``, else $SPEECHPRESS_AUDIO_CACHE, else
    ``$XDG_CACHE_HOME/speechpress/audio`` (``~/.cache/...``)."""
    if given:
        return Path(given)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "speechpress" / "audio"


def _sniff(data: bytes, name: str | None) -> str:
    suffix = Path(name).suffix.lower() if name else ""
    if suffix in _AUDIO_SUFFIXES:
        return suffix
    if data[:4] == b"RIFF":
        return ".wav"
    if data[:4] == b"fLaC":
        return ".flac"
    if data[:4] == b"OggS":
        return ".ogg"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return ".mp3"
    return ".audio"


def _store(folder: Path, data: bytes, suffix: str) -> Path:
    """``data`` under its content hash; written once, atomically (a crash leaves no partial file)."""
    from speechpress.io import atomic_path

    path = folder / f"{hashlib.sha256(data).hexdigest()[:40]}{suffix}"
    if not (path.is_file() and path.stat().st_size == len(data)):
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return path.resolve()


def _array_wav(array, rate, where: str) -> tuple[bytes, str]:
    """A decoded array as float32 WAV bytes (every sample kept exactly)."""
    import soundfile as sf

    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0 or int(rate) != rate:
        raise DataError(f"{where}: audio sampling_rate must be a positive integer, got {rate!r}")
    try:
        data = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{where}: audio array is not numeric") from None
    if data.ndim == 2 and data.shape[0] < data.shape[1]:  # (channels, samples) as datasets decodes
        data = data.T
    if data.ndim not in (1, 2) or data.size == 0:
        raise DataError(f"{where}: audio array must be 1-D or 2-D and not empty, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise DataError(f"{where}: audio array has non-finite samples")
    buf = io.BytesIO()
    sf.write(buf, data, int(rate), format="WAV", subtype="FLOAT")
    return buf.getvalue(), ".wav"


def _audio_path(value, where: str, base: Path | None, folder: Path) -> Path:
    if isinstance(value, (str, os.PathLike)):
        value = {"path": str(value)}
    if not isinstance(value, dict):
        raise DataError(f"{where}: audio must be an Audio value, a dict with array and sampling_rate, or a path; "
                        f"got {type(value).__name__}")
    if value.get("array") is not None:
        data, suffix = _array_wav(value["array"], value.get("sampling_rate"), where)
        return _store(folder, data, suffix)
    if value.get("bytes"):
        data = value["bytes"]
        if not isinstance(data, (bytes, bytearray)):
            raise DataError(f"{where}: audio bytes must be bytes, got {type(data).__name__}")
        return _store(folder, bytes(data), _sniff(data, value.get("path")))
    ref = value.get("path")
    if not ref:
        raise DataError(f"{where}: no audio (neither bytes, an array nor a path)")
    path = Path(str(ref))
    if not path.is_absolute():
        if base is None:
            raise DataError(f"{where}: audio is a reference ({ref}) to a file that is not on this machine")
        path = base / path
    return path.resolve()


# ------------------------------------------------------------------------------------------------ rows

def _check_columns(spec: HFColumns, columns: list[str] | None, label: str) -> None:
    if columns is None:
        return
    missing = [f"{c!r} ({f})" for f, c in spec.columns().items() if c not in columns]
    if missing:
        raise DataError(f"{label}: column(s) {', '.join(missing)} of spec {spec.name!r} not in the dataset "
                        f"(columns: {', '.join(columns)}); set them with hf:PATH#key=column or a YAML spec")


def _text(row: dict, column: str, what: str, where: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: empty {what} (column {column!r})")
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise DataError(f"{where}: {what} (column {column!r}) must be text, got {type(value).__name__}")
    return str(value)


def _jsonable(value) -> bool:
    if isinstance(value, _SCALARS):
        return not isinstance(value, float) or np.isfinite(value)
    if isinstance(value, list):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


def build_example(row: dict, index: int, spec: HFColumns, where: str, label: str, split: str,
                  reader: _Reader, base: Path | None, folder: Path, task: str | None = None) -> Example:
    """One dataset row as an ``Example``; any problem is a DataError naming ``where`` (dataset, split, row)."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: a row must be a mapping of columns, got {type(row).__name__}")
    missing = [c for c in spec.columns().values() if c not in row]
    if missing:
        raise DataError(f"{where}: missing column(s): {', '.join(missing)}")
    if spec.task:
        raw = _text(row, spec.task, "task", where)
        name = spec.task_names.get(raw, raw)
    else:
        name = spec.default_task or task
        if not name:
            raise DataError(f"{where}: spec {spec.name!r} has no task column: give default_task=<task> or --task")
    if name not in TASKS:
        raise DataError(f"{where}: unknown task {name!r} (known: {', '.join(TASKS)}; map a column's values "
                        "with task_names in a YAML spec)")
    metric = _text(row, spec.metric, "metric", where) if spec.metric else TASKS[name].metric
    if metric not in METRICS:
        raise DataError(f"{where}: unknown metric {metric!r} (known: {', '.join(METRICS)})")
    if spec.question:
        prompt = _text(row, spec.question, "question", where)
    elif spec.default_question:
        prompt = spec.default_question
    else:
        raise DataError(f"{where}: spec {spec.name!r} has no question column: give question=<column> or "
                        "default_question=<text>")
    choices = _choices(row, spec, where)
    answer = row.get(spec.answer)
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        raise DataError(f"{where}: empty answer (column {spec.answer!r})")
    if choices:
        lowered = [c.strip().lower() for c in choices]  # option text in another case ("Rock" for "rock")
        text = answer.strip().lower() if isinstance(answer, str) else None
        if text and len(text) > 1 and lowered.count(text) == 1:
            answer = LETTERS[lowered.index(text)]
        else:
            answer = _letter(where, answer, choices)
    elif isinstance(answer, (str, int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    else:
        raise DataError(f"{where}: answer (column {spec.answer!r}) must be text, got {type(answer).__name__}")
    audio = _audio_path(row.get(spec.audio), where, base, folder)
    offset = row.get(spec.offset) if spec.offset else 0.0
    duration = row.get(spec.duration) if spec.duration else None
    offset, duration = reader.audio(where, audio, 0.0 if offset is None else offset, duration)
    meta = {}
    if spec.metadata and row.get(spec.metadata) is not None:
        extra = row[spec.metadata]
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except json.JSONDecodeError:
                raise DataError(f"{where}: metadata (column {spec.metadata!r}) is text but not JSON") from None
        if not isinstance(extra, dict):
            raise DataError(f"{where}: metadata (column {spec.metadata!r}) must be an object")
        meta.update(extra)
    used = set(spec.columns().values())
    keep = spec.keep if spec.keep is not None else [c for c in row if c not in used]
    for column in keep:
        if column not in row:
            raise DataError(f"{where}: missing column(s): {column}")
        if _jsonable(row[column]):
            meta[column] = row[column]
    meta.update(source="hf", dataset=label, split=split, row=index)
    if spec.score_metric:
        meta["score_metric"] = spec.score_metric
    rid = _text(row, spec.id, "id", where) if spec.id else f"{label}-{split}-{index}"
    return Example(rid, audio, offset, duration, name, prompt, choices, answer, metric, meta)


def _choices(row: dict, spec: HFColumns, where: str) -> list[str] | None:
    if not spec.choices:
        return None
    if len(spec.choices) == 1:
        raw = row.get(spec.choices[0])
        if raw is None:
            return None
        if isinstance(raw, str):  # a list stored as JSON text (csv exports)
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raise DataError(f"{where}: choices (column {spec.choices[0]!r}) is text but not a JSON list") from None
        if isinstance(raw, dict):
            raw = [raw[k] for k in sorted(raw)]
        if not isinstance(raw, list):
            raise DataError(f"{where}: choices (column {spec.choices[0]!r}) must be a list, got {type(raw).__name__}")
    else:
        raw = [row.get(c) for c in spec.choices]
        raw = [c for c in raw if c is not None and str(c).strip() != ""]
    if not all(isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in raw):
        raise DataError(f"{where}: choices must be text")
    choices = [str(c) for c in raw]
    if not choices:
        return None
    if len(choices) < 2:
        raise DataError(f"{where}: choices must hold at least 2 options, got {len(choices)}")
    return choices


def iter_hf(source: str | os.PathLike, spec: HFColumns | str | None = None, split: str = "test",
            task: str | None = None, audio_cache: str | os.PathLike | None = None, skip_bad: bool = False,
            reader: _Reader | None = None, audio_root: str | os.PathLike | None = None):
    """Examples one row at a time (a generator: nothing is read before the first is asked for).

    ``source`` is a local folder or file, or a hub id, optionally followed by ``#SPEC`` (see ``parse_spec``);
    ``spec`` (an ``HFColumns``, a spec string) overrides it. Audio held in the dataset goes to ``audio_cache``
    (``cache_dir``); audio given as relative paths is under ``audio_root`` (default: the local dataset's folder).
    With ``skip_bad``, a bad row is recorded in ``reader.out.errors`` and skipped."""
    where_from, inline = split_source(source)
    if spec is None or isinstance(spec, str):
        spec = parse_spec(spec if spec is not None else inline)
    reader = reader or _Reader(skip_bad)
    ds, columns, base, label = open_dataset(where_from, split)
    base = Path(audio_root).resolve() if audio_root else base
    _check_columns(spec, columns, where_from)
    try:
        ds = ds.cast_column(spec.audio, _datasets().Audio(decode=False)) \
            if isinstance(ds.features.get(spec.audio) if ds.features else None, _datasets().Audio) else ds
    except Exception as err:
        raise DataError(f"{where_from}: cannot read column {spec.audio!r} as audio ({err})") from None
    folder = cache_dir(audio_cache)
    rows = iter(ds)
    index = -1
    while True:
        index += 1
        where = f"{where_from} [{split}] row {index}"
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as err:  # an unreadable record in a data file
            raise DataError(f"{where}: cannot read the row ({type(err).__name__}: {err})") from None
        if index == 0 and columns is None:
            _check_columns(spec, list(row) if isinstance(row, dict) else None, where_from)
        try:
            yield build_example(row, index, spec, where, label, split, reader, base, folder, task)
        except DataError as err:
            reader.fail(err)


def load_hf(source: str | os.PathLike, spec: HFColumns | str | None = None, split: str = "test",
            task: str | None = None, audio_cache: str | os.PathLike | None = None, skip_bad: bool = False,
            audio_root: str | os.PathLike | None = None) -> ExampleSet:
    """Every example of a dataset (``iter_hf``) in an ``ExampleSet``, as the other loaders return."""
    reader = _Reader(skip_bad)
    for example in iter_hf(source, spec, split, task, audio_cache, skip_bad, reader, audio_root):
        reader.out.append(example)
    return reader.out

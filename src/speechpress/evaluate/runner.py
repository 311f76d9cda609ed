"""The evaluation sweep: benchmarks x presses x ratios, one folder per run, resumable, sharded across processes.

Why it is shaped this way:

* **One folder per (benchmark, model, press, ratio)**: ``OUT/<benchmark>/<model>/<press label>/`` holds
  ``config.json`` (what was run), ``predictions.jsonl`` (one row per question, with its cost columns) and
  ``metrics.json`` (scores per task and overall, and the run's cost summary). ``speechpress report`` reads them.
* **Resumable, nothing lost**: a row is appended and fsynced as soon as it is answered; a rerun reads every row
  already written (a half-written last line from a crash is discarded) and only answers the rest. A run whose
  rows are all there is skipped without loading the model. ``metrics.json`` and the final, ordered
  ``predictions.jsonl`` are written atomically.
* **Compress once, ask many**: questions on the same stretch of audio (file, offset, duration) share one prefill;
  a query-aware press (SpeechPrune) prefills once per question, and every row says which
  (``query_in_compression``, ``prefill_shared``).
* **Sharding by audio**: under ``torchrun`` / ``accelerate launch`` (``RANK``/``WORLD_SIZE``), rank ``r`` takes
  every ``W``-th audio group, so one prefill still serves all its questions, and appends to its own
  ``shards/rank<r>-of<W>.jsonl``. When all target rows exist, the shards are merged into ``predictions.jsonl``:
  after a gloo barrier by rank 0 when torch.distributed is initialised, otherwise by whichever rank finds the
  union complete (merging is idempotent and atomic, so two ranks doing it at once is harmless).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechpress.errors import ConfigError, DataError, PressError
from speechpress.io import atomic_write_json, atomic_write_text

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
CONFIG = "config.json"
SHARDS = "shards"
NAMED_FORMATS = ("manifest", "longspeech", "audiomarathon", "spiral", "hf")
# Row columns that describe a group's prefill: every row answered from one prefill repeats them.
PREFILL_COLUMNS = ("duration", "press", "query_in_compression", "prefill_id", "encoder_tokens", "llm_audio_tokens",
                   "cached_audio_tokens", "prefix_tokens", "audio_tokens_per_second", "compression_factor", "kv_bytes",
                   "kv_bytes_analytic", "prefill_seconds", "prefill_flops_analytic", "prefill_flops_analytic_causal",
                   "decode_flops_per_token_analytic")
# Settings that change what a row holds: a rerun must match them to reuse rows (limit, world size, out do not).
IDENTITY_KEYS = ("benchmark", "model", "press", "generation", "question_template")


# ------------------------------------------------------------------------------------------------ benchmarks
@dataclass
class Benchmark:
    name: str
    source: str
    format: str
    task: str | None
    examples: list

    def describe(self) -> dict:
        return dict(name=self.name, source=self.source, format=self.format, task=self.task, rows=len(self.examples))


def _slug(text: str) -> str:
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
    return Benchmark(_slug(label), source, resolved, task, list(examples))


def _detected(path: Path) -> str:
    from speechpress.data.loaders import detect_format

    return detect_format(path)


# ------------------------------------------------------------------------------------------------ runs
@dataclass(frozen=True)
class RunSpec:
    """One press setting of a sweep: the spec as typed plus the ratio or tokens-per-second it is run at."""

    press: str
    ratio: float | None = None
    tokens_per_second: float | None = None

    def parsed(self) -> list[tuple]:
        from speechpress.presses import parse_press_spec

        return parse_press_spec(self.press, self.ratio, self.tokens_per_second)

    @property
    def label(self) -> str:
        """Folder-safe name: ``avgpool-x4``, ``hfq-1.67tps``, ``avgpool-x2+sst-x8``, ``identity``."""
        parts = []
        for name, r, t in self.parsed():
            parts.append(name if (r is None and t is None) else (f"{name}-x{r:g}" if r is not None else f"{name}-{t:g}tps"))
        return _slug("+".join(parts))

    @property
    def family(self) -> str:
        """The press names without targets (one plotted line per family)."""
        return "+".join(name for name, _, _ in self.parsed())

    @property
    def nominal_ratio(self) -> float | None:
        """The product of the chain's ratios; None when a press has a tokens-per-second target."""
        total = 1.0
        for _, r, t in self.parsed():
            if t is not None:
                return None
            total *= r if r is not None else 1.0
        return total


def sweep(presses: Sequence[str], ratios: Sequence[float] = (), tokens_per_second: Sequence[float] = ()) -> list[RunSpec]:
    """Every press x every ratio / tokens-per-second target. A bare press name takes each target; a spec with its
    own targets (``avgpool:4``, ``hfq@1.67``, chains) or ``identity`` runs once. Duplicates are dropped."""
    from speechpress.presses import parse_press_spec

    from speechpress.presses import available_presses
    from speechpress.ratio import check_ratio

    known = available_presses()
    for k in ratios:
        check_ratio(k, None)
    for t in tokens_per_second:
        check_ratio(None, t)
    out: list[RunSpec] = []
    for press in presses:
        parsed = parse_press_spec(press)
        for name, r, t in parsed:
            if name not in known:
                raise PressError(f"unknown press {name!r}; available: {', '.join(known)}")
            check_ratio(r, t)
        bare = len(parsed) == 1 and parsed[0][1] is None and parsed[0][2] is None and parsed[0][0] != "identity"
        specs = ([RunSpec(press, float(r), None) for r in ratios] + [RunSpec(press, None, float(t)) for t in tokens_per_second]) if bare else []
        for spec in specs or [RunSpec(press)]:
            if spec.label not in {s.label for s in out}:
                out.append(spec)
    if not out:
        raise ConfigError("no press to run")
    return out


def check_model_path(model: str) -> None:
    """Fail before any run starts on a model path that cannot be a model (hub ids are checked when loaded)."""
    from speechpress.errors import ModelLoadError
    from speechpress.model.persistence import CONFIG_NAME, looks_like_hub_id

    path = Path(model)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path}: is a file, not a model directory")
        if not (path / CONFIG_NAME).is_file():
            raise ModelLoadError(f"{path}: not a model directory (no {CONFIG_NAME})")
    elif not looks_like_hub_id(str(model)):
        raise ModelLoadError(f"{path}: no such model directory")


def model_label(model: str) -> str:
    """A model directory's name; a training output (``RUN/model``) is named after its run, since every run's
    model folder is called ``model``."""
    path = Path(model)
    if not path.exists():
        return _slug(str(model).replace("/", "--"))
    path = path.resolve() if path.name in ("", ".", "..") else path
    return _slug(path.parent.name if path.name == "model" and path.parent.name else path.name)


# ------------------------------------------------------------------------------------------------ metrics
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


def summarize_cost(rows: list[dict]) -> dict:
    """Run-level cost from the rows, counting each prefill once (rows of one prefill repeat its columns)."""
    prefills: dict[str, dict] = {}
    for row in rows:
        prefills.setdefault(row["prefill_id"], row)
    pre = list(prefills.values())
    if not pre:
        return {}

    def mean(key, items=pre):
        vals = [r[key] for r in items if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    seconds = sum(r["duration"] for r in pre)
    cached = sum(r["cached_audio_tokens"] for r in pre)
    counted = [r for r in pre if r.get("prefill_flops_measured") is not None]
    decode_steps = sum(r["new_tokens"] + 1 for r in rows)
    out = dict(
        questions=len(rows),
        prefills=len(pre),
        recordings=len({r["audio_key"] for r in rows}),
        audio_seconds_prefilled=seconds,
        encoder_tokens_mean=mean("encoder_tokens"),
        llm_audio_tokens_mean=mean("llm_audio_tokens"),
        cached_audio_tokens_mean=mean("cached_audio_tokens"),
        audio_tokens_per_second=cached / seconds,
        llm_audio_tokens_per_second=sum(r["llm_audio_tokens"] for r in pre) / seconds,
        compression_factor=sum(r["encoder_tokens"] for r in pre) / max(1, cached),
        kv_bytes_mean=mean("kv_bytes"),
        kv_bytes_max=max(r["kv_bytes"] for r in pre),
        kv_bytes_analytic_mean=mean("kv_bytes_analytic"),
        peak_memory_bytes=max(r["peak_memory_bytes"] for r in rows),
        peak_memory_kind=rows[0]["peak_memory_kind"],
        prefill_seconds_mean=mean("prefill_seconds"),
        prefill_seconds_total=sum(r["prefill_seconds"] for r in pre),
        decode_seconds_mean=mean("decode_seconds", rows),
        decode_seconds_per_token=sum(r["decode_seconds"] for r in rows) / decode_steps,
        new_tokens_mean=mean("new_tokens", rows),
        prefill_flops_measured_mean=mean("prefill_flops_measured", counted) if counted else None,
        flops_counted_prefills=len(counted),
        prefill_flops_analytic_mean=mean("prefill_flops_analytic"),
        prefill_flops_analytic_causal_mean=mean("prefill_flops_analytic_causal"),
        decode_flops_per_token_analytic_mean=mean("decode_flops_per_token_analytic"),
        flops_measured_over_analytic=(
            sum(r["prefill_flops_measured"] for r in counted) / sum(r["prefill_flops_analytic"] for r in counted)
            if counted and all(r.get("prefill_flops_analytic") for r in counted) else None
        ),
    )
    return out


# ------------------------------------------------------------------------------------------------ row files
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


# ------------------------------------------------------------------------------------------------ distribution
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False  # a torch.distributed group we can barrier on
    owned: bool = False  # we started it, so we end it

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.initialised = self.owned = False

    def barrier(self) -> None:
        if self.initialised:
            import torch.distributed as dist

            dist.barrier()


def dist_from_env(init: bool = True) -> Dist:
    """RANK / WORLD_SIZE / LOCAL_RANK as torchrun and accelerate set them. With ``init`` and MASTER_ADDR set,
    a gloo process group is started (used only for barriers), unless one already exists."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE {world})")
    d = Dist(rank, world, local)
    if world > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            d.initialised = True
        elif init and dist.is_available() and os.environ.get("MASTER_ADDR"):
            from datetime import timedelta

            # Ranks wait for the slowest at the end of each run; shards can differ by hours on long audio.
            dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(hours=12))
            d.initialised = d.owned = True
    return d


# ------------------------------------------------------------------------------------------------ the runner
@dataclass
class RunResult:
    run_dir: Path
    label: str
    rows: int
    new_rows: int
    complete: bool  # predictions.jsonl and metrics.json hold every target row
    skipped: bool
    metrics: dict = field(default_factory=dict)


def audio_key(example) -> str:
    dur = "end" if example.duration is None else f"{example.duration:.3f}"
    return f"{example.audio}#{example.offset:.3f}+{dur}"


def group_by_audio(examples: list) -> list[list]:
    """Examples grouped by the stretch of audio they ask about, groups in order of first appearance."""
    groups: dict[str, list] = {}
    for e in examples:
        groups.setdefault(audio_key(e), []).append(e)
    return list(groups.values())


class _AudioCache:
    """The last decoded file: a recording's rows (and asr_short segments of it) are usually adjacent."""

    def __init__(self, sample_rate: int):
        self.sample_rate, self.path, self.audio = sample_rate, None, None

    def segment(self, example):
        from speechpress.audio import load_audio

        if self.path != example.audio:
            self.path, self.audio = example.audio, load_audio(str(example.audio), target_rate=self.sample_rate)
        if example.offset == 0 and example.duration is None:
            return self.audio
        sr = self.audio.sample_rate
        a = int(round(example.offset * sr))
        b = len(self.audio.samples) if example.duration is None else min(len(self.audio.samples), a + int(round(example.duration * sr)))
        return load_audio(self.audio.samples[a:b], sample_rate=sr, target_rate=sr)


class Runner:
    """Runs a sweep; the model is loaded once, on first need (a sweep of finished runs never loads it)."""

    def __init__(self, model_path: str, out: str | Path, *, device: str | None = None, generation: dict | None = None,
                 press_options: dict | None = None, count_flops: str = "first", progress: bool = True,
                 dist: Dist | None = None, model=None):
        if count_flops not in ("first", "all", "none"):
            raise ConfigError(f"count_flops must be first, all or none, got {count_flops!r}")
        self.model_path = str(model_path)
        self.out = Path(out)
        self.device = device
        self.generation = {**dict(max_new_tokens=64, do_sample=False, temperature=1.0, top_p=1.0, top_k=0, seed=None),
                           **(generation or {})}
        self.press_options = dict(press_options or {})
        self.count_flops = count_flops
        self.progress = progress
        self.dist = dist or Dist()
        self._model = model
        if model is None:
            check_model_path(self.model_path)

    @property
    def model(self):
        if self._model is None:
            import torch

            from speechpress.model.speechlm import SpeechLM, default_device

            device = self.device or default_device()
            if device == "cuda" and self.dist.world > 1:
                device = f"cuda:{self.dist.local_rank % max(1, torch.cuda.device_count())}"
            self._model = SpeechLM.from_pretrained(self.model_path, device=device)
        return self._model

    def model_label(self) -> str:
        return model_label(self.model_path)

    # ---------------------------------------------------------------------------------------------------
    def run_config(self, bench: Benchmark, spec: RunSpec) -> dict:
        from speechpress import __version__

        return dict(
            benchmark=dict(name=bench.name, source=bench.source, format=bench.format, task=bench.task),
            model=str(Path(self.model_path).resolve()) if Path(self.model_path).exists() else self.model_path,
            press=dict(spec=spec.press, ratio=spec.ratio, tokens_per_second=spec.tokens_per_second,
                       options=self.press_options, label=spec.label, family=spec.family, nominal_ratio=spec.nominal_ratio),
            generation=self.generation,
            question_template="Example.text_prompt",
            count_flops=self.count_flops,
            speechpress_version=__version__,
        )

    def check_config(self, run_dir: Path, config: dict) -> None:
        path = run_dir / CONFIG
        if path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = None
            if old is not None:
                differ = [k for k in IDENTITY_KEYS if _identity(old, k) != _identity(config, k)]
                if differ:
                    raise ConfigError(
                        f"{run_dir} holds a run with other settings ({', '.join(differ)} differ); its rows cannot be "
                        "reused: choose another --out or delete that folder"
                    )

    def run(self, bench: Benchmark, spec: RunSpec, limit: int | None = None) -> RunResult:
        """Run (or resume, or skip) one (benchmark, model, press, ratio) folder; this rank's shard of it."""
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {limit}")
        targets = bench.examples[:limit] if limit else bench.examples
        run_dir = self.out / bench.name / self.model_label() / spec.label
        config = self.run_config(bench, spec)
        self.check_config(run_dir, config)
        rank, world = self.dist.rank, self.dist.world
        target_ids = {e.id for e in targets}

        done = all_rows(run_dir)
        metrics_path = run_dir / METRICS
        if target_ids <= done.keys() and metrics_path.is_file() and _metrics_rows(metrics_path) == len(done):
            return RunResult(run_dir, spec.label, len(done), 0, True, True, json.loads(metrics_path.read_text()))
        if rank == 0 or not (run_dir / CONFIG).is_file():
            atomic_write_json(run_dir / CONFIG, config)

        own = run_dir / PREDICTIONS if world == 1 else run_dir / SHARDS / f"rank{rank}-of{world}.jsonl"
        repair(own)
        done = all_rows(run_dir)
        groups = group_by_audio(targets)
        mine = [g for i, g in enumerate(groups) if i % world == rank]
        pending = [[e for e in g if e.id not in done] for g in mine]
        todo = sum(len(p) for p in pending)
        new = 0
        if todo:
            new = self._answer(run_dir, own, spec, groups, mine, pending, todo, done)
        self.dist.barrier()
        result = None
        if not self.dist.initialised or rank == 0:
            result = self.finalize(run_dir, bench, spec, targets)
        self.dist.barrier()
        if result is None:  # a non-zero rank under a barrier: rank 0 has merged by now
            result = self._result_from_disk(run_dir, spec, target_ids)
        result.new_rows = new
        return result

    def _result_from_disk(self, run_dir: Path, spec: RunSpec, target_ids: set) -> RunResult:
        rows = all_rows(run_dir)
        metrics_path = run_dir / METRICS
        complete = target_ids <= rows.keys() and metrics_path.is_file()
        metrics = json.loads(metrics_path.read_text()) if complete else {}
        return RunResult(run_dir, spec.label, len(rows), 0, complete, False, metrics)

    def _answer(self, run_dir, own, spec, groups, mine, pending, todo, done) -> int:
        from tqdm import tqdm

        from speechpress.evaluate.cost import (
            analytic_prefill, cache_bytes, count_prefill_flops, peak_memory_kind, reset_peak_memory, synchronize,
        )
        from speechpress.memory import peak_memory_bytes

        model = self.model
        chain = model.press_chain(spec.press, spec.ratio, spec.tokens_per_second, self.press_options)
        query_aware = any(p.query_aware for p in chain)
        index = {id(g): i for i, g in enumerate(groups)}
        audio_cache = _AudioCache(model.config.sample_rate)
        writer = RowWriter(own)
        mine_done = [done[e.id] for g in mine for e in g if e.id in done]
        counted_before = any(r.get("prefill_flops_measured") is not None for r in mine_done)
        flops_left = {"first": 0 if counted_before else 1, "all": None, "none": 0}[self.count_flops]
        bar = tqdm(total=todo, desc=spec.label, unit="q", file=sys.stderr,
                   disable=None if (self.progress and self.dist.rank == 0) else True)
        new = 0
        try:
            for group, todo_rows in zip(mine, pending):
                if not todo_rows:
                    continue
                gi = index[id(group)]
                audio = audio_cache.segment(todo_rows[0])
                reset_peak_memory(model.device)
                # A group a crash cut short already holds its prefill in its finished rows. The audio is prefilled
                # again to answer the rest, but those rows keep the recorded prefill's id and cost, so the run's
                # summary counts one prefill per group, as an uninterrupted run does.
                recorded = None if query_aware else next((done[e.id] for e in group if e.id in done), None)
                context = None
                for qi, example in enumerate(todo_rows):
                    question = example.text_prompt()
                    shared = context is not None and not query_aware
                    if not shared:
                        q = question if query_aware else None
                        synchronize(model.device)
                        context = model.prefill(audio, chain, question=q)
                        synchronize(model.device)
                    if recorded is not None:
                        pre, shared, measured = {k: recorded.get(k) for k in PREFILL_COLUMNS}, True, None
                    elif not shared:
                        analytic, _ = analytic_prefill(model, chain, context.duration, context.prefix_tokens, "dense")
                        causal, _ = analytic_prefill(model, chain, context.duration, context.prefix_tokens, "causal")
                        pre = dict(
                            duration=context.duration, press=context.press,
                            query_in_compression=context.query_in_compression, prefill_id=f"g{gi}:{example.id}",
                            encoder_tokens=context.encoder_tokens, llm_audio_tokens=context.llm_audio_tokens,
                            cached_audio_tokens=context.cached_audio_tokens, prefix_tokens=context.prefix_tokens,
                            audio_tokens_per_second=context.cached_audio_tokens / context.duration,
                            compression_factor=context.encoder_tokens / max(1, context.cached_audio_tokens),
                            kv_bytes=cache_bytes(context.cache),
                            kv_bytes_analytic=None if analytic is None else analytic.kv_bytes,
                            prefill_seconds=context.prefill_seconds,
                            prefill_flops_analytic=None if analytic is None else analytic.prefill_flops,
                            prefill_flops_analytic_causal=None if causal is None else causal.prefill_flops,
                            decode_flops_per_token_analytic=None if analytic is None else analytic.decode_flops_per_token,
                        )
                        measured = None
                        if flops_left is None or flops_left > 0:
                            measured = count_prefill_flops(model, audio, chain, question=q)["total"]
                            flops_left = None if flops_left is None else flops_left - 1
                    answer = model.answer(context, question, **self.generation)
                    row = dict(
                        id=example.id, task=example.task, metric=example.metric, score_metric=scoring_metric(example),
                        audio=str(example.audio), offset=example.offset, duration=pre["duration"],
                        audio_key=audio_key(example), question=question, choices=example.choices,
                        reference=example.answer, reference_text=example.answer_text(), prediction=answer.text,
                        press=pre["press"], query_in_compression=pre["query_in_compression"],
                        prefill_id=pre["prefill_id"], prefill_shared=shared,
                        encoder_tokens=pre["encoder_tokens"], llm_audio_tokens=pre["llm_audio_tokens"],
                        cached_audio_tokens=pre["cached_audio_tokens"], prefix_tokens=pre["prefix_tokens"],
                        audio_tokens_per_second=pre["audio_tokens_per_second"],
                        compression_factor=pre["compression_factor"],
                        kv_bytes=pre["kv_bytes"], kv_bytes_analytic=pre["kv_bytes_analytic"],
                        peak_memory_bytes=peak_memory_bytes(model.device), peak_memory_kind=peak_memory_kind(model.device),
                        prefill_seconds=pre["prefill_seconds"], decode_seconds=answer.decode_seconds,
                        new_tokens=len(answer.token_ids),
                        prefill_flops_measured=measured if not shared else None,
                        prefill_flops_analytic=pre["prefill_flops_analytic"],
                        prefill_flops_analytic_causal=pre["prefill_flops_analytic_causal"],
                        decode_flops_per_token_analytic=pre["decode_flops_per_token_analytic"],
                        rank=self.dist.rank,
                    )
                    writer.write(row)
                    new += 1
                    bar.update(1)
        finally:
            bar.close()
            writer.close()
        return new

    def finalize(self, run_dir: Path, bench: Benchmark, spec: RunSpec, targets: list) -> RunResult:
        """Merge every row file into ``predictions.jsonl`` (benchmark order) and write ``metrics.json``, both
        atomically, once every target row exists; before that, leave everything as it is."""
        rows = all_rows(run_dir)
        target_ids = {e.id for e in targets}
        if not target_ids <= rows.keys():
            return RunResult(run_dir, spec.label, len(rows), 0, False, False)
        order = {e.id: i for i, e in enumerate(bench.examples)}
        ordered = sorted(rows.values(), key=lambda r: (order.get(r["id"], len(order)), r["id"]))
        atomic_write_text(run_dir / PREDICTIONS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
        metrics, unscored, notes = score_rows(ordered)
        doc = dict(
            benchmark=bench.name,
            model=self.model_label(),
            press=spec.label,
            press_family=spec.family,
            nominal_ratio=spec.nominal_ratio,
            rows=len(ordered),
            benchmark_rows=len(bench.examples),
            complete=len(ordered) >= len(bench.examples),
            metrics=metrics,
            unscored=unscored,
            notes=notes,
            cost=summarize_cost(ordered),
        )
        atomic_write_json(run_dir / METRICS, doc)
        return RunResult(run_dir, spec.label, len(ordered), 0, True, False, doc)


def _identity(config: dict, key: str) -> str:
    """The part of a config that decides what rows hold (a benchmark's folder name does not)."""
    value = config.get(key)
    if key == "benchmark" and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "name"}
    if key == "press" and isinstance(value, dict):
        value = {k: value.get(k) for k in ("spec", "ratio", "tokens_per_second", "options")}
    return json.dumps(value, sort_keys=True)


def _metrics_rows(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("rows"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None

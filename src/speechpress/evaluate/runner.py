"""The evaluation sweep: benchmarks x presses x ratios, one folder per run, resumable, sharded across processes.

The parts live beside it: ``benchmark.py`` (what is asked), ``sweep.py`` (which press settings), ``rows.py`` (the
row files), ``scoring.py`` (metrics per row), ``cost.py`` (measured and analytic cost, the run's cost summary) and
``distributed.py`` (rank and barriers). This module answers the questions and writes the folder.

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
import sys
from dataclasses import dataclass, field
from pathlib import Path

from speechpress.errors import ConfigError
from speechpress.evaluate.benchmark import Benchmark
from speechpress.evaluate.cost import summarize_cost
from speechpress.evaluate.distributed import Dist
from speechpress.evaluate.rows import CONFIG, METRICS, PREDICTIONS, SHARDS, RowWriter, all_rows, repair
from speechpress.evaluate.scoring import score_rows
from speechpress.evaluate.sweep import RunSpec, check_model_path, model_label
from speechpress.io import atomic_write_json, atomic_write_text

# Row columns that describe a group's prefill: every row answered from one prefill repeats them.
PREFILL_COLUMNS = ("duration", "press", "query_in_compression", "prefill_id", "encoder_tokens", "llm_audio_tokens",
                   "cached_audio_tokens", "prefix_tokens", "audio_tokens_per_second", "compression_factor", "kv_bytes",
                   "kv_bytes_analytic", "prefill_seconds", "encode_seconds", "encoder_cache", "prefill_flops_analytic",
                   "prefill_flops_analytic_causal", "decode_flops_per_token_analytic")
# Settings that change what a row holds: a rerun must match them to reuse rows (limit, world size, out do not).
IDENTITY_KEYS = ("benchmark", "model", "press", "generation", "question_template", "int8_encoder", "choice_scoring")
# An int8 encoder's runs get a model folder of their own, so a resume never mixes them with fp32 rows.
INT8_LABEL = "+int8-encoder"
# How multiple-choice questions are answered: by writing a letter (generate) or by the options' likelihood (loglik,
# SpeechLM.choose). Likelihood runs get a model folder of their own, beside the generated ones.
CHOICE_SCORING = ("generate", "loglik")
LOGLIK_LABEL = "+loglik"


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


def kept_intervals(spans, digits: int = 2) -> list[list[float]]:
    """The seconds of audio the tokens that entered the LLM cover, as merged [start, end] intervals (a press's
    timeline: which stretches it kept). Tokens whose spans touch or overlap form one interval."""
    out: list[list[float]] = []
    for start, end in spans.tolist():
        start, end = round(start, digits), round(end, digits)
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def prefill_record(model, chain, context, prefill_id: str, encode_seconds: float, encoder_cache: str) -> dict:
    """The ``PREFILL_COLUMNS`` of one prefill: what went into the LLM and the cache, measured and analytic.

    ``prefill_seconds`` counts the encoding as it was measured when it ran (``encode_seconds``), also when the
    tokens came from the encoder cache (``encoder_cache``: hit, miss or off), so every press's time is
    comparable whichever ran first."""
    from speechpress.evaluate.cost import analytic_prefill, cache_bytes

    analytic, _ = analytic_prefill(model, chain, context.duration, context.prefix_tokens, "dense")
    causal, _ = analytic_prefill(model, chain, context.duration, context.prefix_tokens, "causal")
    return dict(
        duration=context.duration, press=context.press, query_in_compression=context.query_in_compression,
        prefill_id=prefill_id, encoder_tokens=context.encoder_tokens, llm_audio_tokens=context.llm_audio_tokens,
        cached_audio_tokens=context.cached_audio_tokens, prefix_tokens=context.prefix_tokens,
        audio_tokens_per_second=context.cached_audio_tokens / context.duration,
        compression_factor=context.encoder_tokens / max(1, context.cached_audio_tokens),
        kv_bytes=cache_bytes(context.cache),
        kv_bytes_analytic=None if analytic is None else analytic.kv_bytes,
        prefill_seconds=encode_seconds + context.prefill_seconds, encode_seconds=encode_seconds,
        encoder_cache=encoder_cache,
        prefill_flops_analytic=None if analytic is None else analytic.prefill_flops,
        prefill_flops_analytic_causal=None if causal is None else causal.prefill_flops,
        decode_flops_per_token_analytic=None if analytic is None else analytic.decode_flops_per_token,
        kept_spans=kept_intervals(context.spans),
    )


def answer_row(example, question: str, answer, pre: dict, *, shared: bool, measured_flops, device, rank: int) -> dict:
    """One ``predictions.jsonl`` row: the question and its scoring, the answer, and its prefill's cost columns."""
    from speechpress.evaluate.cost import peak_memory_kind
    from speechpress.evaluate.scoring import scoring_metric
    from speechpress.memory import peak_memory_bytes

    return dict(
        id=example.id, task=example.task, metric=example.metric, score_metric=scoring_metric(example),
        audio=str(example.audio), offset=example.offset, duration=pre["duration"], audio_key=audio_key(example),
        question=question, choices=example.choices, reference=example.answer, reference_text=example.answer_text(),
        prediction=answer.text,
        **{k: pre[k] for k in ("press", "query_in_compression", "prefill_id")}, prefill_shared=shared,
        **{k: pre[k] for k in ("encoder_tokens", "llm_audio_tokens", "cached_audio_tokens", "prefix_tokens",
                               "audio_tokens_per_second", "compression_factor", "kv_bytes", "kv_bytes_analytic")},
        peak_memory_bytes=peak_memory_bytes(device), peak_memory_kind=peak_memory_kind(device),
        prefill_seconds=pre["prefill_seconds"], encode_seconds=pre.get("encode_seconds"),
        encoder_cache=pre.get("encoder_cache"), decode_seconds=answer.decode_seconds, new_tokens=len(answer.token_ids),
        prefill_flops_measured=measured_flops,
        **{k: pre[k] for k in ("prefill_flops_analytic", "prefill_flops_analytic_causal",
                               "decode_flops_per_token_analytic")},
        # Where the answer is (seconds from the row's offset) and, on the row that ran the prefill, which seconds
        # entered the LLM: the report's timelines. Rows sharing a prefill leave its spans to the first.
        evidence=example.evidence(), kept_spans=None if shared else pre.get("kept_spans"),
        rank=rank,
    )


class _AudioCache:
    """The last decoded file, for rows that ask about a stretch of it (asr_short segments are usually adjacent). A
    row about a whole file gets its path, which the model streams window by window, never decoded whole."""

    def __init__(self, sample_rate: int):
        self.sample_rate, self.path, self.audio = sample_rate, None, None

    def segment(self, example):
        from speechpress.audio import load_audio

        if example.offset == 0 and example.duration is None:
            return str(example.audio)
        if self.path != example.audio:
            self.path, self.audio = example.audio, load_audio(str(example.audio), target_rate=self.sample_rate)
        sr = self.audio.sample_rate
        a = int(round(example.offset * sr))
        b = len(self.audio.samples) if example.duration is None else min(len(self.audio.samples), a + int(round(example.duration * sr)))
        return load_audio(self.audio.samples[a:b], sample_rate=sr, target_rate=sr)


class Runner:
    """Runs a sweep; the model is loaded once, on first need (a sweep of finished runs never loads it)."""

    def __init__(self, model_path: str, out: str | Path, *, device: str | None = None, generation: dict | None = None,
                 press_options: dict | None = None, count_flops: str = "first", progress: bool = True,
                 dist: Dist | None = None, model=None, encoder_cache: str | Path | None = None,
                 encoder_cache_bytes: int | None = None, int8_encoder: bool = False, choice_scoring: str = "generate"):
        """``int8_encoder``: quantize the encoder to int8 once loaded (``SpeechLM.quantize_encoder_int8``, CPU
        only); its runs go to ``OUT/<benchmark>/<model>+int8-encoder/`` and their config.json says so.
        ``choice_scoring="loglik"``: multiple-choice questions are asked bare and answered with the likeliest
        option (``SpeechLM.choose``); other questions are still answered by generation. Runs go to
        ``OUT/<benchmark>/<model>+loglik/``."""
        if count_flops not in ("first", "all", "none"):
            raise ConfigError(f"count_flops must be first, all or none, got {count_flops!r}")
        if choice_scoring not in CHOICE_SCORING:
            raise ConfigError(f"choice_scoring must be generate or loglik, got {choice_scoring!r}")
        self.choice_scoring = choice_scoring
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
        self.encoder_cache_dir = encoder_cache
        self.encoder_cache_bytes = encoder_cache_bytes
        self.encoded = None
        self.int8_encoder = bool(int8_encoder)
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
        if self.int8_encoder and not getattr(self._model, "encoder_int8", False):
            self._model.quantize_encoder_int8()
        return self._model

    def model_label(self) -> str:
        return (model_label(self.model_path) + (INT8_LABEL if self.int8_encoder else "")
                + (LOGLIK_LABEL if self.choice_scoring == "loglik" else ""))

    def encode(self, example, audio):
        """The encoder tokens of one group's audio, (tokens, encode seconds, "hit" / "miss" / "off"): through
        the on-disk encoder cache when the runner has one (each recording encoded once per sweep), else
        encoded here, once for every question and prefill of the group."""
        import time

        from speechpress.encoder_cache import EncodedAudio

        model = self.model
        if self.encoder_cache_dir is None:
            start = time.perf_counter()
            tokens = model.encode(audio)
            return tokens, time.perf_counter() - start, "off"
        if self.encoded is None:
            self.encoded = EncodedAudio(model, self.encoder_cache_dir, max_bytes=self.encoder_cache_bytes)
        key = self.encoded.key(example.audio, example.offset, example.duration)
        tokens, seconds, hit = self.encoded.encode(audio, key)
        return tokens, seconds, "hit" if hit else "miss"

    # ---------------------------------------------------------------------------------------------------
    def run_config(self, bench: Benchmark, spec: RunSpec) -> dict:
        from speechpress import __version__

        return dict(
            benchmark=dict(name=bench.name, source=bench.source, format=bench.format, task=bench.task),
            model=str(Path(self.model_path).resolve()) if Path(self.model_path).exists() else self.model_path,
            press=dict(spec=spec.press, ratio=spec.ratio, tokens_per_second=spec.tokens_per_second,
                       options=self.press_options, label=spec.label, family=spec.family, nominal_ratio=spec.nominal_ratio),
            generation=self.generation,
            question_template=("Example.text_prompt" if self.choice_scoring == "generate"
                               else "Example.prompt (multiple choice), Example.text_prompt (others)"),
            count_flops=self.count_flops,
            int8_encoder=self.int8_encoder,
            choice_scoring=self.choice_scoring,
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

        from speechpress.evaluate.cost import count_prefill_flops, reset_peak_memory, synchronize

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
                encoded, encode_seconds, cache_state = self.encode(todo_rows[0], audio)
                reset_peak_memory(model.device)  # the peak of the press's path: the encoding is the same for all
                # A group a crash cut short already holds its prefill in its finished rows. The audio is prefilled
                # again to answer the rest, but those rows keep the recorded prefill's id and cost, so the run's
                # summary counts one prefill per group, as an uninterrupted run does.
                recorded = None if query_aware else next((done[e.id] for e in group if e.id in done), None)
                context = None
                for qi, example in enumerate(todo_rows):
                    by_likelihood = self.choice_scoring == "loglik" and bool(example.choices)
                    question = example.prompt if by_likelihood else example.text_prompt()
                    shared = context is not None and not query_aware
                    if not shared:
                        q = question if query_aware else None
                        synchronize(model.device)
                        context = model.prefill(audio, chain, question=q, encoded=encoded)
                        synchronize(model.device)
                    if recorded is not None:
                        pre, shared, measured = {k: recorded.get(k) for k in PREFILL_COLUMNS}, True, None
                    elif not shared:
                        pre = prefill_record(model, chain, context, prefill_id=f"g{gi}:{example.id}",
                                             encode_seconds=encode_seconds, encoder_cache=cache_state)
                        measured = None
                        if flops_left is None or flops_left > 0:
                            measured = count_prefill_flops(model, audio, chain, question=q)["total"]
                            flops_left = None if flops_left is None else flops_left - 1
                    if by_likelihood:
                        answer = model.choose(context, question, example.choices)
                    else:
                        answer = model.answer(context, question, **self.generation)
                    row = answer_row(example, question, answer, pre, shared=shared,
                                     measured_flops=None if shared else measured, device=model.device,
                                     rank=self.dist.rank)
                    if by_likelihood:
                        row["choice_logprobs"] = answer.extra["choice_logprobs"]
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
    if key == "int8_encoder":  # runs written before the option existed are fp32
        value = bool(value)
    if key == "choice_scoring":  # and answered multiple choice by generation
        value = value or "generate"
    return json.dumps(value, sort_keys=True)


def _metrics_rows(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("rows"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None

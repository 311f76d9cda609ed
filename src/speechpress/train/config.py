"""Training configs: dataclasses read from YAML, strictly validated, overridable with ``a.b=value``.

A config names a recipe; the recipe's defaults (``RECIPE_DEFAULTS``) are laid down first, then the YAML file,
then the command-line overrides, so a YAML file only says what differs. Every key is checked against the
dataclasses below: an unknown key or a wrong type is a ``ConfigError`` naming the key, before anything is
loaded or trained.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from speechpress.errors import ConfigError

RECIPES = ("ctc", "asr", "qa", "sst", "press", "lora")
TRAINABLE = ("encoder", "projector", "press", "llm", "lora", "ctc_head")


@dataclass
class ModelSection:
    # A named size ("tiny"), a SpeechLMConfig YAML/JSON file, or a model directory (e.g. the previous phase's
    # output_dir/model), or a transformers checkpoint with a backend.
    init: str = "tiny"
    seed: int = 0  # initialisation seed for a model built from a config


@dataclass
class DataSection:
    train: list[str] = field(default_factory=list)  # manifest paths (relative paths: from the current directory)
    tasks: list[str] = field(default_factory=list)  # keep only these tasks; empty = every task
    # Cut every recording-level row's utterance timeline into one ASR clip per utterance: many more short ASR
    # examples from the same audio (the generated corpus stores the timeline in each row's metadata).
    utterances: bool = False
    # With utterances: join consecutive utterances of a recording into clips of at most this many seconds (e.g.
    # 30: one full encoder window of speech per clip). A Whisper-style encoder pays for a whole 30 s window
    # whatever the clip's length, so packing puts ~10x more speech through each encoder step. None = one per clip.
    pack_seconds: float | None = None
    max_duration: float = 30.0  # seconds; longer clips are skipped (counted in the log)
    max_answer_tokens: int = 256  # longer answers are skipped, never truncated
    max_examples: int | None = None  # first N after filtering (for quick runs)
    cache_dir: str | None = None  # encoder-output cache, used while the encoder is frozen; None = in memory only
    # With a frozen encoder: encode each whole recording once, in the fixed 30 s windows inference uses, and cut
    # every clip's tokens out of it (by their time spans), instead of running a 30 s window per clip. A short
    # clip then costs its own length, not a padded 30 s window, and sees the encoder context it has at inference.
    slice_recordings: bool = False
    # With slice_recordings: this fraction of clips (chosen by a hash of the clip, the same in every epoch, process
    # and resumed run) is encoded alone instead, from the start of its own padded window, as `speechpress
    # transcribe` and eval's utterance rows encode a short clip. A clip's Whisper encoding alone and cut from its
    # recording differ (cosine 0.4-0.6 on dictation), and a projector trained on slices only transcribes clips
    # alone worse (docs/train.md, "Encoder-output cache").
    alone_fraction: float = 0.0


@dataclass
class PressSection:
    name: str | None = None  # a press or chain (e.g. "hfq", "avgpool:4", "avgpool:2+sst:8"); None = identity
    ratio: float | None = None
    tokens_per_second: float | None = None
    options: dict = field(default_factory=dict)  # constructor options of the trainable press (e.g. num_queries)


@dataclass
class LoraSection:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    merge: bool = True  # merge the adapter into the LLM weights before saving (a plain model for users)


@dataclass
class CurriculumStage:
    """One stage of the SST curriculum: ``alpha`` for every interval, or a list to draw each interval's alpha
    from (the paper's per-interval alpha_i; Activation Beacon samples a ratio per window the same way)."""

    alpha: int | list[int]
    steps: int

    @property
    def alphas(self) -> list[int]:
        return list(self.alpha) if isinstance(self.alpha, list) else [self.alpha]


@dataclass
class TrainSection:
    steps: int = 100  # optimizer steps (with an SST curriculum: the sum of its stages' steps)
    batch_size: int = 8  # global batch: examples per optimizer step over all processes and accumulation
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine, linear or constant (after warmup)
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "auto"  # auto (bf16 on a GPU that has it, else fp32), no, bf16, fp16
    trainable: list[str] = field(default_factory=list)  # any of TRAINABLE
    log_every: int = 1
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    progress: bool = True
    log_examples: bool = False  # each process appends the example ids of every step to examples-rank<r>.jsonl
    distributed: str = "ddp"  # ddp or fsdp (under torchrun / accelerate launch)
    # ctc recipe: "pooled" (the tokens presses see) or "encoder" (50/s, speechpress encoder), characters; or "llm":
    # the projector's output scored against the LLM's token embeddings, targets the LLM's token ids
    ctc_frames: str = "pooled"
    # sst recipe: every N-th step trains without the SST press (0: never), so adapters trained under compression
    # keep the uncompressed path (training the whole LLM under SST alone lost it)
    uncompressed_every: int = 0


@dataclass
class TrainConfig:
    recipe: str
    output_dir: str
    seed: int = 0
    resume: bool = True  # continue from the latest checkpoint in output_dir/checkpoints
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    press: PressSection = field(default_factory=PressSection)
    lora: LoraSection | None = None  # present = train a LoRA adapter on the LLM (peft)
    curriculum: list[CurriculumStage] = field(default_factory=list)  # sst: alpha per stage, in order
    train: TrainSection = field(default_factory=TrainSection)
    source: str = ""  # where the config came from (filled in by the loader)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data

    def alpha_at(self, step: int) -> int | list[int] | None:
        """The SST alpha (or the set each interval's alpha is drawn from) of the curriculum stage holding
        optimizer step ``step`` (0-based)."""
        end = 0
        for stage in self.curriculum:
            end += stage.steps
            if step < end:
                return stage.alpha
        return self.curriculum[-1].alpha if self.curriculum else None

    def sst_at(self, step: int) -> bool:
        """Whether optimizer step ``step`` (0-based) trains through SST (``train.uncompressed_every``)."""
        every = self.train.uncompressed_every
        return not (every and (step + 1) % every == 0)


# What each recipe trains and reads unless the YAML says otherwise. Why these defaults: see docs/train.md.
RECIPE_DEFAULTS: dict[str, dict] = {
    # phase 0: encoder CTC alignment; the trial on CPU showed an end-to-end tiny model ignores the audio
    "ctc": {"data": {"tasks": ["asr_short"], "utterances": True}, "train": {"trainable": ["encoder", "ctc_head"], "lr": 1e-3}},
    # phase 1: ASR alignment of projector (+ trainable press); encoder and LLM frozen (or LoRA)
    "asr": {"data": {"tasks": ["asr_short"], "utterances": True}, "train": {"trainable": ["projector", "press"], "lr": 1e-3}},
    # phase 2: instruction / QA alignment on every corpus task
    "qa": {"train": {"trainable": ["projector", "press"], "lr": 5e-4}},
    # phase 3: SST compression with the 2 -> 4 -> 8 curriculum (16 left for zero-shot evaluation), on long-form
    # recordings (Speech-XL trains SST on long audio: whole recordings up to 5 min, not 30 s clips)
    "sst": {
        "data": {"max_duration": 300.0},
        "press": {"name": "sst", "options": {"interval_tokens": 64}},
        "curriculum": [{"alpha": 2, "steps": 30}, {"alpha": 4, "steps": 30}, {"alpha": 8, "steps": 40}],
        "lora": {},
        "train": {"trainable": ["press", "lora"], "lr": 5e-4},
    },
    # a trainable pre-LLM press (hfq, qformer) with the projector
    "press": {"data": {"tasks": ["asr_short"], "utterances": True}, "train": {"trainable": ["press", "projector"], "lr": 1e-3}},
    # a training-free press (avgpool, segment, downsample) recovered with LoRA on the LLM (Bhati et al.)
    "lora": {"press": {"name": "avgpool", "ratio": 4}, "lora": {}, "train": {"trainable": ["projector", "lora"], "lr": 5e-4}},
}


# ------------------------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, data: dict | None = None) -> TrainConfig:
    """A checked TrainConfig from a YAML file (or a dict) plus ``a.b=value`` overrides."""
    source = str(path) if path is not None else "config"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"{p}: cannot parse YAML ({err})") from None
    data = copy.deepcopy(data) if data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    for item in overrides or []:
        apply_override(data, item)
    recipe = data.get("recipe")
    if recipe not in RECIPES:
        raise ConfigError(f"{source}: recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    merged = _merge(copy.deepcopy(RECIPE_DEFAULTS[recipe]), data)
    if "lora" in data and data["lora"] is None:  # `lora: null` switches a recipe's default LoRA off
        merged["lora"] = None
    cfg = _build(TrainConfig, merged, "")
    cfg.source = source
    if cfg.recipe == "sst" and cfg.curriculum and "steps" in (data.get("train") or {}):
        total = sum(s.steps for s in cfg.curriculum)
        if cfg.train.steps != total:
            raise ConfigError(f"train.steps {cfg.train.steps} differs from the curriculum's {total} steps; set the stages' steps instead")
    validate(cfg)
    return cfg


def apply_override(data: dict, item: str) -> None:
    """``a.b.c=value``: the value is read as YAML (``3``, ``1e-3``, ``true``, ``[a, b]``, ``null``)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override must look like key.sub=value, got {item!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: cannot read the value ({err})") from None
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part, {}), dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
        node = node.setdefault(part, {})
    node[parts[-1]] = parsed


def _merge(base: dict, top: dict) -> dict:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return base


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - {"source"}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key(s): {', '.join(prefix + k for k in unknown)} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name in names:
        key = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key)
        else:
            f = next(f for f in dataclasses.fields(cls) if f.name == name)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing config key: {key}")
    return cls(**kwargs)


def _coerce(tp, value, key: str):
    """Check ``value`` against the annotation ``tp`` (ints are accepted where floats are expected)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, {} if value is None else value, key)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(_check_finite(value, key))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return _check_finite(float(value), key)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return _check_finite(float(value), key)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover


def _check_finite(value, key: str):
    """YAML reads .nan and .inf as floats, and NaN passes every ``<``/``>`` range check below."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if isinstance(value, dict):
        for name, item in value.items():
            _check_finite(item, f"{key}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f"{key}[{i}]")
    return value


def validate(cfg: TrainConfig) -> None:
    """Range and consistency checks that need the whole config (types are checked while building)."""
    t = cfg.train
    bad = [x for x in t.trainable if x not in TRAINABLE]
    if bad:
        raise ConfigError(f"train.trainable: unknown part(s) {', '.join(bad)} (known: {', '.join(TRAINABLE)})")
    if not t.trainable:
        raise ConfigError("train.trainable is empty: nothing to train")
    if "lora" in t.trainable and cfg.lora is None:
        raise ConfigError("train.trainable has lora but the config has no lora section")
    if cfg.lora is not None and "lora" not in t.trainable:
        raise ConfigError("a lora section is given but train.trainable lacks lora")
    if "lora" in t.trainable and "llm" in t.trainable:
        raise ConfigError("train.trainable: choose lora or llm (full fine-tuning), not both")
    if ("ctc_head" in t.trainable) != (cfg.recipe == "ctc"):
        raise ConfigError("ctc_head is trained by the ctc recipe, and the ctc recipe trains a ctc_head")
    for name in ("steps", "batch_size", "grad_accum", "log_every", "checkpoint_every", "keep_checkpoints"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(t, name)}")
    if t.warmup_steps < 0 or t.lr <= 0 or t.weight_decay < 0:
        raise ConfigError("train.lr must be > 0, train.warmup_steps and train.weight_decay >= 0")
    if t.schedule not in ("cosine", "linear", "constant"):
        raise ConfigError(f"train.schedule must be cosine, linear or constant, got {t.schedule!r}")
    if t.mixed_precision not in ("auto", "no", "bf16", "fp16"):
        raise ConfigError(f"train.mixed_precision must be auto, no, bf16 or fp16, got {t.mixed_precision!r}")
    if t.distributed not in ("ddp", "fsdp"):
        raise ConfigError(f"train.distributed must be ddp or fsdp, got {t.distributed!r}")
    if t.uncompressed_every < 0 or (t.uncompressed_every and cfg.recipe != "sst"):
        raise ConfigError(f"train.uncompressed_every must be >= 0 and is read by the sst recipe only, got {t.uncompressed_every}")
    if t.uncompressed_every == 1:
        raise ConfigError("train.uncompressed_every: 1 would never train SST; use 0 (never) or N >= 2")
    if t.ctc_frames not in ("pooled", "encoder", "llm"):
        raise ConfigError(f"train.ctc_frames must be pooled, encoder or llm, got {t.ctc_frames!r}")
    if cfg.recipe == "ctc" and t.ctc_frames == "llm" and "projector" not in t.trainable:
        raise ConfigError("train.ctc_frames=llm trains the projector against the LLM's embeddings: add projector to train.trainable")
    if t.batch_size % t.grad_accum:
        raise ConfigError(f"train.batch_size {t.batch_size} is not divisible by train.grad_accum {t.grad_accum}")
    if not cfg.data.train:
        raise ConfigError("data.train: give at least one manifest")
    if not 0.0 <= cfg.data.alone_fraction <= 1.0:
        raise ConfigError(f"data.alone_fraction must be between 0 and 1, got {cfg.data.alone_fraction}")
    if cfg.data.alone_fraction and not cfg.data.slice_recordings:
        raise ConfigError("data.alone_fraction is read with data.slice_recordings only (without it every clip is encoded alone)")
    if cfg.data.max_duration <= 0 or cfg.data.max_answer_tokens < 1:
        raise ConfigError("data.max_duration must be > 0 and data.max_answer_tokens >= 1")
    if cfg.recipe == "sst":
        if not cfg.press.name or cfg.press.name.split("+")[-1].split(":")[0] != "sst":
            raise ConfigError("the sst recipe needs press.name ending in sst (e.g. sst or avgpool:2+sst)")
        if not cfg.curriculum and cfg.press.ratio is None:
            raise ConfigError("the sst recipe needs a curriculum (alpha per stage) or press.ratio")
    elif cfg.curriculum:
        raise ConfigError(f"curriculum is for the sst recipe, not {cfg.recipe}")
    for i, stage in enumerate(cfg.curriculum):
        if not stage.alphas or min(stage.alphas) < 1 or stage.steps < 1:
            raise ConfigError(f"curriculum[{i}]: alpha (or each alpha of its list) and steps must be >= 1")
        if i and (min(stage.alphas) < min(cfg.curriculum[i - 1].alphas) or max(stage.alphas) < max(cfg.curriculum[i - 1].alphas)):
            raise ConfigError(
                f"curriculum[{i}]: alpha {stage.alpha} is below the previous stage's {cfg.curriculum[i - 1].alpha}; "
                "the curriculum runs from low to high compression (Speech-XL)"
            )
    if cfg.curriculum:
        t.steps = sum(s.steps for s in cfg.curriculum)
    if cfg.recipe == "press" and not cfg.press.name:
        raise ConfigError("the press recipe needs press.name (hfq or qformer)")
    if cfg.lora is not None and (cfg.lora.r < 1 or cfg.lora.alpha < 1 or not 0 <= cfg.lora.dropout < 1):
        raise ConfigError("lora.r and lora.alpha must be >= 1 and 0 <= lora.dropout < 1")

"""The training loop on accelerate: one code path for 1 process, DDP (torchrun / accelerate launch) and FSDP.

Why it is written this way:

* Exact resume. The batch of step s is a function of (seed, s) (``StepSampler``) and the RNG is reseeded from
  (seed, step, rank) before every step, so a run resumed from the checkpoint at step k computes exactly the
  steps k+1.. of an uninterrupted run; the checkpoint also stores the RNG states, optimizer and scheduler.
* Atomic checkpoints. Every ``checkpoint_every`` steps a checkpoint is written into a hidden temporary folder
  and renamed into ``checkpoints/step-NNNNNNN`` in one step; a kill leaves either the old or the new one,
  never half of one, and loses only the steps since the last checkpoint.
* One global batch. The loss of each micro-batch is its summed token loss divided by the number of target
  tokens of the whole global batch (all-reduced), times the world size that DDP averages over; so gradient
  accumulation and N processes give the gradient of one big batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speechpress.errors import ConfigError, DataError
from speechpress.train.config import TrainConfig
from speechpress.train.state_files import load_state, save_state

CHECKPOINTS = "checkpoints"
LOG_NAME = "log.jsonl"


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path | None
    steps: int
    losses: list[float]
    seconds: float
    resumed_from: int


def load_initial_model(cfg: TrainConfig):
    """``model.init``: a named size, a SpeechLMConfig YAML/JSON file, or a model directory."""
    from speechpress.model.config import NAMED_CONFIGS, named_or_file_config
    from speechpress.model.speechlm import SpeechLM

    init = cfg.model.init
    path = Path(init)
    if init in NAMED_CONFIGS or path.is_file():
        return SpeechLM.from_config(named_or_file_config(init), seed=cfg.model.seed)
    if not path.exists() and "/" not in init:
        raise ConfigError(f"model.init: {init!r} is not a named size ({', '.join(NAMED_CONFIGS)}), a config file or a model directory")
    return SpeechLM.from_pretrained(init)


def make_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator

    mp = cfg.train.mixed_precision
    cuda = torch.cuda.is_available()
    if mp == "auto":
        mp = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if mp != "no" and not cuda:
        raise ConfigError(f"train.mixed_precision={mp} needs a GPU; use auto or no on CPU")
    kwargs = {}
    if cfg.train.distributed == "fsdp" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(use_orig_params=True)
    return Accelerator(mixed_precision=mp, cpu=not cuda, **kwargs)


def reseed(seed: int, step: int, rank: int) -> None:
    s = (seed * 1_000_003 + step * 1009 + rank) % (2**31)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def train(cfg: TrainConfig, *, stop_after: int | None = None, log=print) -> TrainResult:
    """Run (or resume) the config's recipe; returns the losses logged by this process.

    ``stop_after`` ends the run abruptly after that many steps, without any final write, as a kill would
    (for tests of resume).
    """
    from speechpress.encoder_cache import FrameCache, encoder_fingerprint
    from speechpress.train.data import AudioStore, StepSampler, load_training_set
    from speechpress.train.recipes import build_objective

    start_time = time.perf_counter()
    out = Path(cfg.output_dir)
    ckpt_root = out / CHECKPOINTS
    latest = latest_checkpoint(ckpt_root)
    if latest is not None and not cfg.resume:
        raise ConfigError(f"{out} already holds checkpoints; pass resume=true to continue or choose another output_dir")
    if (out / "model").exists() and latest is None:
        raise ConfigError(f"{out}/model already exists; choose another output_dir")
    # Bad data fails here, before the model is even loaded.
    dataset = load_training_set(cfg.data)

    accelerator = make_accelerator(cfg)
    rank, world = accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    torch.manual_seed(cfg.seed)
    model = load_initial_model(cfg)
    dataset = load_training_set(cfg.data, model.tokenizer)  # now also drop answers longer than the limit
    model.to(accelerator.device)
    model.train()
    cache = None
    if "encoder" not in cfg.train.trainable:
        cache = FrameCache(cfg.data.cache_dir, encoder_fingerprint(model))
    torch.manual_seed(cfg.seed)  # LoRA and fresh presses initialise from here
    objective = build_objective(cfg, model, AudioStore(model.config.sample_rate), cache)
    objective.to(accelerator.device)
    objective.train()
    named = [(n, p) for n, p in objective.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([p for _, p in named], lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = make_scheduler(cfg, optimizer)
    sampler = StepSampler(len(dataset), cfg.train.batch_size, cfg.seed, world, rank, cfg.train.grad_accum)

    start = 0
    if latest is not None:
        start = load_checkpoint(latest, objective, named, optimizer, scheduler, rank, world, cfg)
        truncate_log(out / f"examples-rank{rank}.jsonl", start)
        if main:
            truncate_log(out / LOG_NAME, start)
            log(f"resuming from {latest} (step {start})")
    out.mkdir(parents=True, exist_ok=True)
    if main:
        from speechpress.io import atomic_write_text

        import yaml

        atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        n_train = sum(p.numel() for _, p in named)
        log(
            f"recipe {cfg.recipe}: {len(dataset)} examples, {cfg.train.steps} steps of {cfg.train.batch_size} "
            f"({world} process(es) x {sampler.per_micro} x {cfg.train.grad_accum} accumulation), "
            f"{n_train / 1e6:.3f}M trainable parameters ({', '.join(cfg.train.trainable)}), device {accelerator.device}"
            + (f", skipped {dataset.skipped}" if dataset.skipped else "")
        )
    wrapped = accelerator.prepare(objective)
    writer = tensorboard_writer(out) if main else None
    from tqdm import tqdm

    bar = tqdm(total=cfg.train.steps, initial=start, desc=f"train {cfg.recipe}", unit="step",
               disable=not (main and cfg.train.progress))
    losses: list[float] = []
    examples = dataset.examples
    for step in range(start, cfg.train.steps):
        t0 = time.perf_counter()
        reseed(cfg.seed, step, rank)
        indices = sampler.micro_batches(step)
        micro = [objective.prepare([examples[i] for i in idx], step) for idx in indices]
        if cfg.train.log_examples:
            with open(out / f"examples-rank{rank}.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step + 1, "rank": rank, "ids": [examples[i].id for idx in indices for i in idx]}) + "\n")
        counts = torch.tensor([float(sum(b["count"] for b in micro))], device=accelerator.device)
        total = accelerator.reduce(counts, "sum").item() if world > 1 else counts.item()
        if total <= 0:
            raise DataError(f"step {step}: the batch has no target tokens")
        summed = torch.zeros((), device=accelerator.device)
        for m, batch in enumerate(micro):
            sync = m == len(micro) - 1
            ctx = contextlib.nullcontext() if sync or world == 1 else accelerator.no_sync(wrapped)
            with ctx, accelerator.autocast():
                loss_sum = wrapped(batch)
                accelerator.backward(loss_sum * (world / total))
            summed = summed + loss_sum.detach().float()
        if cfg.train.max_grad_norm:
            accelerator.clip_grad_norm_([p for _, p in named], cfg.train.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        summed = accelerator.reduce(summed[None], "sum")[0] if world > 1 else summed
        loss = float(summed) / total
        losses.append(loss)
        done = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if main and (done % cfg.train.log_every == 0 or done == cfg.train.steps):
            row = {"step": done, "loss": round(loss, 7), "lr": lr, "tokens": int(total), "examples": cfg.train.batch_size,
                   "epoch": round(sampler.epoch_of(done), 4), "seconds": round(time.perf_counter() - t0, 4)}
            alpha = cfg.alpha_at(step) if cfg.recipe == "sst" else None
            if alpha is not None:
                row["alpha"] = alpha if cfg.sst_at(step) else "uncompressed"
            with open(out / LOG_NAME, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            if writer is not None:
                writer.add_scalar("train/loss", loss, done)
                writer.add_scalar("train/lr", lr, done)
        if done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps:
            save_checkpoint(ckpt_root, done, objective, named, optimizer, scheduler, accelerator, cfg)
        if stop_after is not None and done >= stop_after and done < cfg.train.steps:
            bar.close()
            return TrainResult(out, None, done, losses, time.perf_counter() - start_time, start)
    bar.close()
    model_dir = None
    accelerator.wait_for_everyone()
    if main:
        model_dir = save_outputs(cfg, objective, out)
        summary = {"recipe": cfg.recipe, "steps": cfg.train.steps, "resumed_from": start, "final_loss": losses[-1] if losses else None,
                   "seconds": round(time.perf_counter() - start_time, 2), "model": str(model_dir),
                   "cache_hits": cache.hits if cache else None, "cache_misses": cache.misses if cache else None}
        from speechpress.io import atomic_write_json

        atomic_write_json(out / "summary.json", summary)
        log(f"wrote {model_dir} (final loss {summary['final_loss']})")
    if writer is not None:
        writer.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(out, model_dir, cfg.train.steps, losses, time.perf_counter() - start_time, start)


def make_scheduler(cfg: TrainConfig, optimizer):
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[cfg.train.schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=cfg.train.warmup_steps, num_training_steps=cfg.train.steps)


def tensorboard_writer(out: Path):
    """TensorBoard scalars when the tensorboard package is installed; the JSONL log is always written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


# ------------------------------------------------------------------------------------------- checkpoints


def latest_checkpoint(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / "state.json").is_file())
    return done[-1] if done else None


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: Path, step: int, objective, named, optimizer, scheduler, accelerator, cfg: TrainConfig) -> Path:
    """Trainable weights, optimizer, scheduler, RNG per rank and the step, written atomically; safetensors and
    JSON only (``state_files``), so loading a shared checkpoint cannot run code."""
    from safetensors.torch import save_file

    main, rank = accelerator.is_main_process, accelerator.process_index
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_state(_rng_state(), tmp, f"rng-{rank}")
    fsdp = cfg.train.distributed == "fsdp" and accelerator.num_processes > 1
    if fsdp:
        save_state(optimizer.state_dict(), tmp, f"optimizer-{rank}")
    accelerator.wait_for_everyone()
    if main:
        weights = {n: p.detach().to("cpu").contiguous().clone() for n, p in named}
        save_file(weights, str(tmp / "trainable.safetensors"), metadata={"step": str(step)})
        if not fsdp:
            save_state(optimizer.state_dict(), tmp, "optimizer-0")
        save_state(scheduler.state_dict(), tmp, "scheduler")
        state = {"step": step, "world_size": accelerator.num_processes, "recipe": cfg.recipe, "seed": cfg.seed,
                 "batch_size": cfg.train.batch_size, "fsdp": fsdp}
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        old = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
        for p in old[: -cfg.train.keep_checkpoints]:
            shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: Path, objective, named, optimizer, scheduler, rank: int, world: int, cfg: TrainConfig) -> int:
    state = json.loads((path / "state.json").read_text())
    for key in ("recipe", "seed", "batch_size"):
        if state[key] != getattr(cfg, key, None) and state[key] != getattr(cfg.train, key, None):
            raise ConfigError(f"{path}: was written with {key}={state[key]!r}; this config differs, so it cannot resume it")
    load_trainable(path, dict(named))
    optimizer.load_state_dict(load_state(path, f"optimizer-{rank}" if state.get("fsdp") else "optimizer-0"))
    scheduler.load_state_dict(load_state(path, "scheduler"))
    if state["world_size"] == world and ((path / f"rng-{rank}.json").is_file() or (path / f"rng-{rank}.pt").is_file()):
        _set_rng_state(load_state(path, f"rng-{rank}"))
    return int(state["step"])


def load_trainable(path: Path, params: dict) -> None:
    """Copy a checkpoint's trainable weights into ``params`` (name -> parameter), which must match them exactly."""
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    if set(weights) != set(params):
        missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
        raise ConfigError(f"{path}: trainable parameters differ from this config (missing {missing[:3]}, unexpected {extra[:3]})")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n].to(p.device, p.dtype))


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows of steps after ``step`` (written after the checkpoint a resumed run starts from)."""
    if not path.is_file():
        return
    from speechpress.io import atomic_write_text

    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    keep = [line for line in rows if json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


# ------------------------------------------------------------------------------------------- outputs


def export_checkpoint(cfg: TrainConfig, checkpoint: str | Path, model_dir: str | Path) -> Path:
    """The model a finished run would save, from one of its checkpoints: a run can be evaluated while it trains.
    The config must be the run's (it rebuilds the same trainable parts: presses, LoRA)."""
    from speechpress.train.data import AudioStore
    from speechpress.train.recipes import build_objective

    checkpoint = Path(checkpoint)
    if not (checkpoint / "trainable.safetensors").is_file() or not (checkpoint / "state.json").is_file():
        raise ConfigError(f"{checkpoint}: not a training checkpoint (no trainable.safetensors and state.json)")
    state = json.loads((checkpoint / "state.json").read_text())
    if state.get("recipe") != cfg.recipe:
        raise ConfigError(f"{checkpoint}: written by the {state.get('recipe')!r} recipe, the config is {cfg.recipe!r}")
    torch.manual_seed(cfg.seed)
    model = load_initial_model(cfg)
    torch.manual_seed(cfg.seed)
    objective = build_objective(cfg, model, AudioStore(model.config.sample_rate), None)
    load_trainable(checkpoint, {n: p for n, p in objective.named_parameters() if p.requires_grad})
    return save_outputs(cfg, objective, Path(model_dir), model_dir=Path(model_dir))


def save_outputs(cfg: TrainConfig, objective, out: Path, model_dir: Path | None = None) -> Path:
    """The trained model via ``save_pretrained`` into ``model_dir`` (default ``out/model``; LoRA merged into the
    LLM unless lora.merge is false, then the adapter goes to ``out/lora``), and the CTC head in ``out`` for the
    ctc recipe (an export's ``out`` is its model folder, so the head lands beside the model's files)."""
    model = objective.model
    if cfg.lora is not None:
        if cfg.lora.merge:
            model.llm = model.llm.merge_and_unload()
        else:
            model.llm.save_pretrained(str(out / "lora"))
            model.llm = model.llm.unload()
    model.eval()
    model_dir = model_dir or out / "model"
    model.save_pretrained(model_dir)  # first: an export writes the head into the model's own (then no longer empty) folder
    if cfg.recipe == "ctc":
        from safetensors.torch import save_file

        from speechpress.io import atomic_path
        from speechpress.train.ctc import CTC_ALPHABET

        with atomic_path(out / "ctc_head.safetensors") as tmp:
            head = {k: v.detach().cpu().contiguous() for k, v in objective.head.state_dict().items()}
            alphabet = "the LLM tokenizer's ids; blank after the last" if cfg.train.ctc_frames == "llm" else CTC_ALPHABET
            save_file(head, str(tmp), metadata={"alphabet": alphabet, "frames": cfg.train.ctc_frames})
    return model_dir

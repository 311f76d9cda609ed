"""The training recipes: what is trained and which loss, each a small module with ``prepare`` and ``forward``.

* ``ctc``   phase 0: a CTC head over characters on the encoder output trains the encoder (the head is kept
  aside in ``output_dir/ctc_head.safetensors``). On CPU a tiny encoder learns to hear this way in minutes,
  where end-to-end training of encoder + LLM plateaued with the audio ignored.
* ``asr`` / ``qa`` / ``press`` / ``lora``  phases 1-2 and the pre-LLM press recipes: the answer loss of the
  LLM on ``prefix ids + audio embeddings + question ids + answer ids + eos`` (the model's own chat template via
  ``SpeechLM.prompt_ids``), loss on the answer tokens only. They differ in data and in what is trainable.
* ``sst``   phase 3: the same loss through ``SummaryTokenPress.training_inputs`` (one forward with the 4D mask
  whose logits equal streaming inference), alpha from the curriculum stage of each step.

``prepare`` runs outside autograd (decoding, log-mel, a frozen encoder through the frame cache); ``forward``
returns (summed loss, number of target tokens) so the loop can normalise by the global count, which makes
accumulation and multi-process runs equal to one big batch.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from speechpress.errors import ConfigError
from speechpress.presses import AudioTokens
from speechpress.train.data import AudioStore, FrameCache, TrainExample, clip_windows, window_spans

CTC_ALPHABET = " 'abcdefghijklmnopqrstuvwxyz0123456789"


def ctc_normalize(text: str) -> str:
    """Lower case, letters/digits/apostrophes kept, other characters to spaces, spaces collapsed."""
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return re.sub(r" +", " ", text).strip()


def ctc_targets(text: str) -> list[int]:
    return [CTC_ALPHABET.index(c) + 1 for c in ctc_normalize(text)]  # 0 is the blank


def ctc_greedy_decode(ids: list[int]) -> str:
    out, prev = [], 0
    for i in ids:
        if i != prev and i != 0:
            out.append(CTC_ALPHABET[i - 1])
        prev = i
    return "".join(out)


def causal_lm(llm: nn.Module) -> nn.Module:
    """The transformers causal LM under a peft wrapper (LoRA layers are injected in place, so they still run)."""
    get = getattr(llm, "get_base_model", None)
    return get() if callable(get) else llm


class AudioFrontend:
    """Clips -> encoder tokens with spans, through the frame cache while the encoder is frozen."""

    def __init__(self, model, store: AudioStore, cache: FrameCache | None, slice_recordings: bool = False):
        self.model, self.store, self.cache = model, store, cache
        self.slice_recordings = slice_recordings

    def windows(self, examples: list[TrainExample]) -> dict:
        """Log-mel windows of every clip, stacked: what a trainable encoder needs inside ``forward``."""
        cfg = self.model.config
        feats, valid, owner, meta = [], [], [], []
        for i, ex in enumerate(examples):
            samples = self.store.clip(ex)
            duration = len(samples) / cfg.sample_rate
            for w in clip_windows(samples, cfg):
                feats.append(w.features)
                valid.append(w.valid_frames)
                owner.append(i)
                meta.append((w, duration))
        return {"features": torch.stack(feats), "valid": valid, "owner": owner, "meta": meta, "n": len(examples)}

    def encode(self, win: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(pooled tokens [n, D], spans [n, 2]) per clip, differentiable when the encoder is."""
        model = self.model
        feats = win["features"].to(model.device, model.encoder.conv1.weight.dtype if hasattr(model.encoder, "conv1") else None)
        frames = model.encode_windows(feats, win["valid"])
        rows: list[list] = [[] for _ in range(win["n"])]
        for owner, f, (w, duration) in zip(win["owner"], frames, win["meta"]):
            if f.shape[0]:
                rows[owner].append((f, window_spans(w, f.shape[0], model.config, duration)))
        out = []
        for parts in rows:
            if not parts:
                raise ConfigError("a training clip gives this model no audio tokens (too short)")
            out.append((torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])))
        return out

    @torch.no_grad()
    def frozen_tokens(self, examples: list[TrainExample]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Encoder outputs of a frozen encoder, computed once per clip (or, with ``slice_recordings``, once per
        recording and cut per clip) and then read from the cache."""
        if self.slice_recordings:
            return [self.recording_slice(ex) for ex in examples]
        out = []
        for ex in examples:
            hit = self.cache.get(ex.clip_key) if self.cache is not None else None
            if hit is None:
                # One clip at a time: its frames never depend on which clips share its batch, so a resumed or
                # multi-process run reads bit-identical frames (a one-off cost: later epochs hit the cache).
                ((frames, spans),) = self.encode(self.windows([ex]))
                hit = (frames.float().cpu(), spans)
                if self.cache is not None:
                    self.cache.put(ex.clip_key, *hit)
            out.append(hit)
        return out

    @torch.no_grad()
    def recording_slice(self, ex: TrainExample) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens of ``ex``'s stretch cut from its whole recording's encoding (spans made clip-relative).

        A token belongs to the clip when the middle of its span lies inside the clip, so consecutive clips
        share no token and miss none."""
        key = f"{ex.audio}|recording"
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is None:
            tokens = self.model.encode(self.store.recording(ex.audio))
            hit = (tokens.embeddings[0].float().cpu(), tokens.spans[0].cpu())
            if self.cache is not None:
                self.cache.put(key, *hit)
        frames, spans = hit
        middle = spans.mean(dim=1)
        inside = (middle >= ex.offset) & (middle < ex.offset + ex.duration)
        if not bool(inside.any()):
            raise ConfigError(f"{ex.id}: the clip at {ex.offset:.3f} s of {ex.audio} holds no audio token (too short)")
        return frames[inside], spans[inside] - ex.offset


class Objective(nn.Module):
    """Base: holds the model (so DDP sees every trainable parameter) and the audio front-end."""

    def __init__(self, model, frontend: AudioFrontend, train_encoder: bool):
        super().__init__()
        self.model = model
        self.frontend = frontend
        self.train_encoder = train_encoder

    def audio_inputs(self, examples: list[TrainExample]) -> dict:
        if self.train_encoder:
            return {"windows": self.frontend.windows(examples)}
        return {"rows": self.frontend.frozen_tokens(examples)}

    def audio_tokens(self, batch: dict) -> AudioTokens:
        rows = self.frontend.encode(batch["windows"]) if "windows" in batch else batch["rows"]
        dtype = self.model.projector.weight.dtype if hasattr(self.model.projector, "weight") else None
        rows = [(f.to(self.model.device, dtype), s) for f, s in rows]
        return AudioTokens.from_rows(rows)


class CTCObjective(Objective):
    """Phase 0: CTC over characters on the encoder output (pooled tokens or raw 50/s encoder frames)."""

    def __init__(self, model, frontend, frames: str = "pooled"):
        super().__init__(model, frontend, train_encoder=True)
        if frames == "encoder" and not hasattr(model.encoder, "conv1"):
            raise ConfigError("train.ctc_frames=encoder needs a Whisper-style encoder; use pooled")
        self.frames = frames
        self.head = nn.Linear(model.config.encoder_output_dim, len(CTC_ALPHABET) + 1)
        self.loss_fn = nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)

    def prepare(self, examples: list[TrainExample], step: int) -> dict:
        if any(ex.duration > self.model.config.window_seconds for ex in examples):
            raise ConfigError("the ctc recipe trains on clips of at most one 30 s window; lower data.max_duration")
        targets = [ctc_targets(ex.answer) for ex in examples]
        return {"windows": self.frontend.windows(examples), "targets": targets, "count": sum(len(t) for t in targets)}

    def encoder_rows(self, win: dict) -> list[torch.Tensor]:
        if self.frames == "pooled":
            return [f for f, _ in self.frontend.encode(win)]
        from speechpress.model.lengths import encoder_frames_for_mel_frames

        model = self.model
        hidden = model.encoder(win["features"].to(model.device, model.encoder.conv1.weight.dtype)).last_hidden_state
        return [h[: encoder_frames_for_mel_frames(v)] for h, v in zip(hidden, win["valid"])]

    def forward(self, batch: dict) -> torch.Tensor:
        rows = self.encoder_rows(batch["windows"])
        lengths = torch.tensor([r.shape[0] for r in rows])
        padded = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        log_probs = self.head(padded).float().log_softmax(-1).transpose(0, 1)  # [T, B, C]
        targets = torch.tensor([i for t in batch["targets"] for i in t], dtype=torch.long)
        target_lengths = torch.tensor([len(t) for t in batch["targets"]])
        return self.loss_fn(log_probs, targets.to(log_probs.device), lengths, target_lengths)


class AnswerObjective(Objective):
    """Phases 1-2 and the press / LoRA recipes: LM loss on the answer after [prefix, audio, question]."""

    def __init__(self, model, frontend, chain, train_encoder: bool = False):
        super().__init__(model, frontend, train_encoder)
        self.chain = nn.ModuleList(chain)
        self.prefix_ids, _ = model.prompt_ids(None)

    def text_ids(self, ex: TrainExample) -> tuple[list[int], list[int]]:
        tok = self.model.tokenizer
        _, suffix = self.model.prompt_ids(ex.prompt)
        answer = tok(ex.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        return suffix, answer

    def prepare(self, examples: list[TrainExample], step: int) -> dict:
        batch = self.audio_inputs(examples)
        batch["text"] = [self.text_ids(ex) for ex in examples]
        batch["count"] = sum(len(a) for _, a in batch["text"])
        return batch

    def compressed(self, batch: dict) -> AudioTokens:
        return self.model.press_tokens(self.audio_tokens(batch), list(self.chain))

    def forward(self, batch: dict) -> torch.Tensor:
        model = self.model
        tokens = self.compressed(batch)
        embed = model.llm.get_input_embeddings()
        dev = model.device
        rows, predict, targets = [], [], []
        for b, (suffix, answer) in enumerate(batch["text"]):
            n = int(tokens.lengths[b])
            ids_before = torch.tensor(self.prefix_ids, device=dev)
            ids_after = torch.tensor(suffix + answer, device=dev)
            audio = tokens.embeddings[b, :n].to(embed.weight.dtype)
            rows.append(torch.cat([embed(ids_before), audio, embed(ids_after)]))
            first = len(self.prefix_ids) + n + len(suffix)  # sequence index of the first answer token
            predict.append(torch.arange(first - 1, first - 1 + len(answer)))
            targets.extend(answer)
        return lm_loss(model.llm, rows, predict, torch.tensor(targets, device=dev))


class SSTObjective(AnswerObjective):
    """Phase 3: the answer loss through the SST training path; alpha follows the curriculum per step."""

    def __init__(self, model, frontend, chain, alpha_at, train_encoder: bool = False):
        super().__init__(model, frontend, chain, train_encoder)
        self.alpha_at = alpha_at

    def prepare(self, examples: list[TrainExample], step: int) -> dict:
        batch = super().prepare(examples, step)
        batch["alpha"] = self.alpha_at(step)
        return batch

    def forward(self, batch: dict) -> torch.Tensor:
        model = self.model
        tokens = model.press_tokens(self.audio_tokens(batch), list(self.chain))
        kv_press = self.chain[-1]  # the sst recipe checked that the chain ends in its KV press
        embed = model.llm.get_input_embeddings()
        dev, dtype = model.device, embed.weight.dtype
        B = tokens.batch_size
        prefix = embed(torch.tensor([self.prefix_ids], device=dev)).expand(B, -1, -1)
        texts = [torch.tensor(s + a, device=dev) for s, a in batch["text"]]
        suffix = nn.utils.rnn.pad_sequence([embed(t) for t in texts], batch_first=True)
        inputs = kv_press.training_inputs(
            prefix, tokens.embeddings.to(dtype), tokens.lengths, suffix, torch.tensor([len(t) for t in texts]), alpha=batch["alpha"]
        )
        predict, targets = [], []
        for b, (s, a) in enumerate(batch["text"]):
            predict.append(inputs["suffix_index"][b, len(s) - 1 : len(s) - 1 + len(a)].cpu())
            targets.extend(a)
        return lm_loss(
            model.llm, None, predict, torch.tensor(targets, device=dev),
            inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"], position_ids=inputs["position_ids"],
        )


def lm_loss(llm, rows, predict, targets, **inputs) -> torch.Tensor:
    """Summed cross-entropy of ``targets`` predicted at sequence positions ``predict[b]`` of each row.

    The LM head runs on those positions only (a 150k vocabulary over every audio token would dominate memory).
    ``rows`` are right-padded here with a 2D mask; the SST path passes its own embeds, 4D mask and positions.
    """
    causal = causal_lm(llm)
    if rows is not None:
        lengths = [r.shape[0] for r in rows]
        inputs_embeds = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        mask = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)[None] < torch.tensor(lengths, device=inputs_embeds.device)[:, None]
        inputs = {"inputs_embeds": inputs_embeds, "attention_mask": mask.long()}
    hidden = causal.get_decoder()(**inputs, use_cache=False).last_hidden_state
    b_index = torch.cat([torch.full((len(p),), b) for b, p in enumerate(predict)]).to(hidden.device)
    t_index = torch.cat(predict).to(hidden.device)
    logits = causal.get_output_embeddings()(hidden[b_index, t_index]).float()
    return nn.functional.cross_entropy(logits, targets, reduction="sum")


# ------------------------------------------------------------------------------------------------ setup


def training_chain(cfg, model) -> list:
    """The press chain of the config, built by the one chain builder. A trainable press is first created in
    ``model.presses`` (and its constructor settings in ``model.config.presses``) so that ``save_pretrained`` keeps
    it, or reused if the model has one; the chain then shares its weights."""
    from speechpress.presses import available_presses, parse_press_spec
    from speechpress.presses.chain import build_chain, new_press, split_press_options

    spec = cfg.press.name or "identity"
    parsed = parse_press_spec(spec, cfg.press.ratio, cfg.press.tokens_per_second)
    presses = available_presses()
    steps, untrained_options = [], {}
    options = split_press_options([name for name, _, _ in parsed], cfg.press.options)
    for (name, r, t), opts in zip(parsed, options):
        if name not in presses:
            raise ConfigError(f"press.name: unknown press {name!r}; available: {', '.join(presses)}")
        cls = presses[name]
        if cls.space == "kv" and cfg.curriculum and r is None and t is None:
            r = float(cfg.curriculum[-1].alpha)  # the press keeps the last stage's alpha as its default
        if cls.query_aware:
            raise ConfigError(f"press {name!r} reads the question; training through it is not supported")
        if cls.trainable:
            if name not in model.presses:
                settings = {k: v for k, v in (("ratio", r), ("tokens_per_second", t)) if v is not None}
                model.presses[name] = new_press(model.config, name, **settings, **opts).to(model.device)
                model.config.presses[name] = {**settings, **opts}
                if hasattr(model.presses[name], "init_from_token"):  # SSTs start at EOS, as Activation Beacon does
                    model.presses[name].init_from_token(model.llm, model.tokenizer.eos_token_id)
            if r is not None or t is not None:
                model.presses[name].ratio, model.presses[name].tokens_per_second = r, t
                model.config.presses[name].update({"ratio": r, "tokens_per_second": t})
                model.config.presses[name] = {k: v for k, v in model.config.presses[name].items() if v is not None}
        else:
            untrained_options.update(opts)  # a trained press took its options when it was created
        steps.append((name, r, t))
    chain = build_chain(model.config, steps, options=untrained_options, trained=model.presses, strict_options=False)
    kinds = [p.space for p in chain]
    if cfg.recipe == "sst" and kinds[-1:] != ["kv"]:
        raise ConfigError("the sst recipe needs the sst press last in the chain")
    if cfg.recipe != "sst" and "kv" in kinds:
        raise ConfigError(f"a KV-cache press (sst) is trained by the sst recipe, not {cfg.recipe}")
    if cfg.recipe == "press" and not any(p.trainable for p in chain):
        raise ConfigError(f"the press recipe needs a trainable press (hfq, qformer), got {spec!r}")
    return chain


def apply_lora(cfg, model) -> None:
    """Wrap the LLM with a peft LoRA adapter (model.llm becomes a PeftModel; merged back before saving)."""
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, m in model.llm.named_modules() if isinstance(m, nn.Linear)}
    targets = [t for t in cfg.lora.target_modules if t in names]
    if not targets:
        raise ConfigError(f"lora.target_modules {cfg.lora.target_modules} match no Linear layer of the LLM (it has {sorted(names)})")
    lc = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, target_modules=targets, bias="none")
    model.llm = get_peft_model(model.llm, lc)


def build_objective(cfg, model, store: AudioStore, cache: FrameCache | None) -> Objective:
    """The recipe's module with exactly the configured parts trainable (the rest frozen)."""
    wanted = set(cfg.train.trainable)
    # Remember which parameters the modules themselves keep frozen (e.g. Whisper's positional table).
    own_frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    if cfg.lora is not None:
        apply_lora(cfg, model)
    model.requires_grad_(False)
    train_encoder = "encoder" in wanted
    frontend = AudioFrontend(model, store, None if train_encoder else cache, cfg.data.slice_recordings and not train_encoder)
    if cfg.recipe == "ctc":
        objective: Objective = CTCObjective(model, frontend, cfg.train.ctc_frames)
    else:
        chain = training_chain(cfg, model)
        if cfg.recipe == "sst":
            objective = SSTObjective(model, frontend, chain, cfg.alpha_at, train_encoder)
        else:
            objective = AnswerObjective(model, frontend, chain, train_encoder)
    objective.requires_grad_(False)

    def enable(module: nn.Module) -> None:
        for p in module.parameters():
            if id(p) not in own_frozen:
                p.requires_grad_(True)

    if train_encoder:
        enable(model.encoder)
    if "projector" in wanted:
        enable(model.projector)
    if "llm" in wanted:
        enable(model.llm)
    if "press" in wanted and cfg.recipe != "ctc":
        for press in objective.chain:
            if press.trainable:
                enable(press)
    if "lora" in wanted:
        for name, p in model.llm.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
    if "ctc_head" in wanted:
        enable(objective.head)
    if not any(p.requires_grad for p in objective.parameters()):
        raise ConfigError(f"train.trainable {sorted(wanted)} selects no parameter of this model and press chain")
    return objective

"""The training objectives: what each recipe trains and its loss, each a small module with ``prepare`` and ``forward``.

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

import numpy as np
import torch
from torch import nn

from speechpress.errors import ConfigError
from speechpress.presses import AudioTokens
from speechpress.train.ctc import CTC_ALPHABET, ctc_targets
from speechpress.train.data import TrainExample
from speechpress.train.frontend import AudioFrontend


def causal_lm(llm: nn.Module) -> nn.Module:
    """The transformers causal LM under a peft wrapper (LoRA layers are injected in place, so they still run)."""
    get = getattr(llm, "get_base_model", None)
    return get() if callable(get) else llm


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


class LLMVocabularyHead(nn.Module):
    """CTC output layer over the LLM's own vocabulary: the cosine of an audio token (after the projector) with
    every row of the LLM's frozen input-embedding matrix, plus a learned blank row, times a learned scale.

    Why: trained through a frozen LLM's answer loss, the projector can lower the loss with the sentence frame
    alone (the LLM fills in a template) and never carries a name or a number (docs/train.md, phase 4). Scoring
    each audio token against the embeddings of the words spoken asks every token for the word it holds, without
    an LLM forward (the issue's "CTC through the LLM's embedding matrix").

    The scale starts at 30: a cosine is at most 1, so over 49k rows a scale of 10 caps a frame's probability for
    the right token near 0.3 whatever the projector does (the first run's loss stalled at that floor, emitting
    only punctuation), and Adam moves the log-scale by about the learning rate per step."""

    def __init__(self, embeddings: nn.Embedding, scale: float = 30.0):
        super().__init__()
        self._embeddings = [embeddings]  # the LLM's, frozen: kept out of this module's parameters and state
        self.blank = nn.Parameter(embeddings.weight.detach().float().mean(0).clone())
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(scale))))

    @property
    def blank_id(self) -> int:
        return self._embeddings[0].weight.shape[0]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        rows = torch.cat([self._embeddings[0].weight.detach().float(), self.blank[None]], dim=0)
        cos = nn.functional.normalize(tokens.float(), dim=-1) @ nn.functional.normalize(rows, dim=-1).T
        return self.log_scale.exp() * cos


class CTCObjective(Objective):
    """Phase 0: CTC over characters on the encoder output (pooled tokens or raw 50/s encoder frames); or
    (``frames="llm"``) CTC over the LLM's token ids on the projector's output, the encoder frozen."""

    def __init__(self, model, frontend, frames: str = "pooled", train_encoder: bool = True):
        super().__init__(model, frontend, train_encoder=train_encoder or frames != "llm")
        if frames == "encoder" and not hasattr(model.encoder, "conv1"):
            raise ConfigError("train.ctc_frames=encoder needs a Whisper-style encoder; use pooled")
        self.frames = frames
        if frames == "llm":
            self.head = LLMVocabularyHead(model.llm.get_input_embeddings())
            self.loss_fn = nn.CTCLoss(blank=self.head.blank_id, reduction="sum", zero_infinity=True)
        else:
            self.head = nn.Linear(model.config.encoder_output_dim, len(CTC_ALPHABET) + 1)
            self.loss_fn = nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)

    def targets(self, text: str) -> list[int]:
        if self.frames == "llm":
            return self.model.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ctc_targets(text)

    def prepare(self, examples: list[TrainExample], step: int) -> dict:
        if any(ex.duration > self.model.config.window_seconds for ex in examples):
            raise ConfigError("the ctc recipe trains on clips of at most one 30 s window; lower data.max_duration")
        targets = [self.targets(ex.answer) for ex in examples]
        audio = self.audio_inputs(examples) if self.frames == "llm" else {"windows": self.frontend.windows(examples)}
        return {**audio, "targets": targets, "count": sum(len(t) for t in targets)}

    def encoder_rows(self, batch: dict) -> list[torch.Tensor]:
        if self.frames == "llm":
            tokens = self.model.project(self.audio_tokens(batch))
            return [e for e, _ in tokens.rows()]
        win = batch["windows"]
        if self.frames == "pooled":
            return [f for f, _ in self.frontend.encode(win)]
        from speechpress.model.lengths import encoder_frames_for_mel_frames

        model = self.model
        feats = torch.stack([w.features for w in win["windows"]])  # one window per clip (checked in prepare)
        hidden = model.encoder(feats.to(model.device, model.encoder.conv1.weight.dtype)).last_hidden_state
        return [h[: encoder_frames_for_mel_frames(w.valid_frames)] for h, w in zip(hidden, win["windows"])]

    def forward(self, batch: dict) -> torch.Tensor:
        rows = self.encoder_rows(batch)
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
    """Phase 3: the answer loss through the SST training path; alpha follows the curriculum per step. A step
    that ``sst_at`` leaves uncompressed trains the plain path (the chain's token presses, no SST)."""

    def __init__(self, model, frontend, chain, alpha_at, train_encoder: bool = False, seed: int = 0, sst_at=None):
        super().__init__(model, frontend, chain, train_encoder)
        self.alpha_at, self.seed = alpha_at, seed
        self.sst_at = sst_at or (lambda step: True)

    def prepare(self, examples: list[TrainExample], step: int) -> dict:
        batch = super().prepare(examples, step)
        batch["alpha"] = interval_alphas(self.alpha_at(step), self.seed, step) if self.sst_at(step) else None
        return batch

    def forward(self, batch: dict) -> torch.Tensor:
        if batch["alpha"] is None:
            return super().forward(batch)
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


def interval_alphas(alpha, seed: int, step: int):
    """A curriculum stage's alpha as the SST press takes it: an int as is; a list as ``interval -> alpha`` drawn
    uniformly from it, seeded by (seed, step, interval) so a resumed run draws the same ratios."""
    if not isinstance(alpha, list):
        return alpha
    choices = list(alpha)
    return lambda k: choices[int(np.random.default_rng([seed, step, k]).integers(len(choices)))]


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

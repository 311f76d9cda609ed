"""Analytic cost of a speech LLM on a recording: tokens, KV cache, weights, FLOPs and a peak-memory estimate.

Computed from the architecture alone (a :class:`SpeechLMConfig`, e.g. a card from ``speechpress.model.cards``),
so it works for 7B models on a laptop and for hour-long audio nobody has run yet. Measured cost (a real
SpeechLM forward under a memory/FLOP counter) is a separate path that reports the same fields.

Conventions (``docs/profile.md`` has the derivations and an example):

* FLOPs count a multiply-add as 2 FLOPs (as ``torch.utils.flop_counter`` does); only matmuls, convolutions and
  attention are counted, not norms, activations, softmax or RoPE.
* Linear layers of the LLM: ``2 * P_layer * L`` per token, with ``P_layer = h*nh*hd + 2*h*kv*hd + nh*hd*h +
  3*h*I`` (q, k, v, o, gate, up, down). The LM head ``2*h*V`` runs on one position in prefill (only the next
  token's logits are needed) and once per decoded token.
* Attention: ``4 * L * nh * hd`` per (query, key) pair (``Q K^T`` and ``A V``). ``attention="causal"`` counts
  only the pairs a causal mask keeps (a prefill of ``T`` tokens has ``T (T + 1) / 2``: the ideal a causal
  kernel can reach); ``attention="dense"`` counts ``T^2``, which is what eager/SDPA kernels compute and what
  ``FlopCounterMode`` reports.
* Encoder: Whisper windows of ``window_seconds`` (30 s), each padded to ``max_source_positions`` frames, so
  ``ceil(duration / 30)`` windows cost the same: conv1 ``2*M*d*3*mels`` (M = 2 * positions mel frames), conv2
  ``2*P*d*3*d``, per layer ``2*P*(4 d^2 + 2 d F) + 4 P^2 d`` (bidirectional attention).
* KV cache: ``2 (K and V) * L * kv * hd * bytes * cached tokens``.
* Presses are asked, not recognised by name: a chain of (name, ratio[, tokens_per_second]) steps is built by the
  one chain builder (on the meta device: no weights), each press's ``output_length`` gives its token count and a
  KV press's ``kv_schedule`` its prefill blocks (SST: per interval of ``interval_tokens`` audio tokens,
  ``ceil(L / alpha)`` summary tokens kept and the speech tokens' KV evicted; one interval's raw tokens are
  cached transiently). A press that declares ``variable_length`` is refused: it cannot be costed from its
  length alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from speechpress.errors import ConfigError, PressError
from speechpress.model.config import SpeechLMConfig
from speechpress.model.lengths import audio_token_count
from speechpress.presses.base import Press
from speechpress.presses.chain import build_chain, parse_steps
from speechpress.presses.hfq import DEFAULT_TOKENS_PER_SECOND as HFQ_TOKENS_PER_SECOND  # noqa: F401 (re-export)
from speechpress.presses.summary_tokens import DEFAULT_INTERVAL_TOKENS as SST_INTERVAL_TOKENS
from speechpress.ratio import check_ratio

# Longest recording the cost model takes: about a week. Counting is per 30 s window and per SST interval, so 1e12
# minutes never finished; 10,000 minutes takes a tenth of a second.
MAX_MINUTES = 10_000
DTYPE_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "int8": 1}


@dataclass(frozen=True)
class PressStep:
    """One press of a chain, by name: a ratio ``k`` (tokens in / out) or a tokens-per-second target."""

    name: str
    ratio: float | None = None
    tokens_per_second: float | None = None

    def label(self) -> str:
        if self.tokens_per_second is not None:
            return f"{self.name}@{self.tokens_per_second:g}"
        return self.name if self.ratio is None else f"{self.name}:{self.ratio:g}"


def as_chain(chain, config: SpeechLMConfig | None = None, interval_tokens: int = SST_INTERVAL_TOKENS) -> list[tuple[PressStep, Press]]:
    """(label, press) of each step of a chain given as None (no compression), an overall ratio, resolved Presses
    or (name, ratio[, tokens_per_second]) items; named presses come from the one chain builder, on the meta
    device so a 7B card's trainable presses cost no memory."""
    if chain is None:
        return []
    if isinstance(chain, (int, float)) and not isinstance(chain, bool):
        check_ratio(float(chain), None)
        return [] if chain == 1 else [(PressStep("ratio", float(chain)), Press(ratio=float(chain)))]
    items = list(chain)
    if items and all(isinstance(p, Press) for p in items):
        presses = build_chain(config, items)
        return [(PressStep(p.name, p.ratio, p.tokens_per_second), p) for p in presses]
    named = [(i.name, i.ratio, i.tokens_per_second) if isinstance(i, PressStep) else i for i in items]
    steps = [PressStep(*step) for step in parse_steps(named)]
    if not steps:
        return []
    if config is None:
        raise PressError("a chain of named presses needs the model config to build them")
    with torch.device("meta"):
        presses = build_chain(config, [(st.name, st.ratio, st.tokens_per_second) for st in steps],
                              options={"interval_tokens": interval_tokens}, strict_options=False)
    return list(zip(steps, presses))


@dataclass(frozen=True)
class LLMShape:
    """The numbers of a decoder-only LLM config that cost depends on."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool
    qk_norm: bool

    @classmethod
    def from_config(cls, llm: dict) -> "LLMShape":
        try:
            h, heads = int(llm["hidden_size"]), int(llm["num_attention_heads"])
            shape = cls(
                hidden=h,
                layers=int(llm["num_hidden_layers"]),
                heads=heads,
                kv_heads=int(llm.get("num_key_value_heads") or heads),
                head_dim=int(llm.get("head_dim") or h // heads),
                intermediate=int(llm["intermediate_size"]),
                vocab=int(llm.get("vocab_size", 151936)),
                tied=bool(llm.get("tie_word_embeddings", False)),
                # Qwen2 has q/k/v biases by design; Qwen3 and Llama-style models have none unless attention_bias.
                qkv_bias=llm.get("model_type") == "qwen2" or bool(llm.get("attention_bias", False)),
                qk_norm=llm.get("model_type") == "qwen3",
            )
        except KeyError as err:
            raise ConfigError(f"llm config lacks {err.args[0]!r}, which the cost model needs") from None
        return shape

    @property
    def attn_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def linear_params_per_layer(self) -> int:
        """Weights that multiply every token in one layer: q, k, v, o projections and the gated MLP."""
        h, a, kvw = self.hidden, self.attn_width, self.kv_heads * self.head_dim
        return h * a + 2 * h * kvw + a * h + 3 * h * self.intermediate

    @property
    def params(self) -> int:
        per_layer = self.linear_params_per_layer + 2 * self.hidden  # + input and post-attention RMSNorm
        if self.qkv_bias:
            per_layer += self.attn_width + 2 * self.kv_heads * self.head_dim
        if self.qk_norm:
            per_layer += 2 * self.head_dim
        embed = self.vocab * self.hidden
        return self.layers * per_layer + embed + (0 if self.tied else embed) + self.hidden  # + final norm

    @property
    def kv_bytes_per_token_element(self) -> int:
        """K and V entries per cached token (multiply by bytes per element)."""
        return 2 * self.layers * self.kv_heads * self.head_dim


@dataclass(frozen=True)
class EncoderShape:
    """A Whisper encoder config's cost-relevant numbers (``max_source_positions`` frames per window)."""

    d_model: int
    layers: int
    heads: int
    ffn: int
    mels: int
    positions: int

    @classmethod
    def from_config(cls, enc: dict) -> "EncoderShape":
        try:
            return cls(
                d_model=int(enc["d_model"]),
                layers=int(enc["encoder_layers"]),
                heads=int(enc["encoder_attention_heads"]),
                ffn=int(enc["encoder_ffn_dim"]),
                mels=int(enc.get("num_mel_bins", 80)),
                positions=int(enc.get("max_source_positions", 1500)),
            )
        except KeyError as err:
            raise ConfigError(f"encoder config lacks {err.args[0]!r}, which the cost model needs") from None

    @property
    def params(self) -> int:
        d, f = self.d_model, self.ffn
        conv = (self.mels * 3 * d + d) + (d * 3 * d + d)
        # q, v, out with bias, k without (Whisper); two LayerNorms; fc1 and fc2 with bias.
        layer = 4 * d * d + 3 * d + 4 * d + (d * f + f) + (f * d + d)
        return conv + self.positions * d + self.layers * layer + 2 * d

    @property
    def flops_per_window(self) -> int:
        d, f, p = self.d_model, self.ffn, self.positions
        conv1 = 2 * (2 * p) * d * 3 * self.mels
        conv2 = 2 * p * d * 3 * d
        layer = 2 * p * (4 * d * d + 2 * d * f) + 4 * p * p * d
        return conv1 + conv2 + self.layers * layer


def attention_pairs(block: int, cached: int, attention: str) -> int:
    """(query, key) pairs when ``block`` new tokens attend to ``cached`` earlier ones and to each other."""
    if attention == "causal":
        return block * cached + block * (block + 1) // 2
    if attention == "dense":
        return block * (cached + block)
    raise ConfigError(f"attention must be 'causal' or 'dense', got {attention!r}")


def llm_prefill_flops(shape: LLMShape, blocks: Sequence[tuple[int, int]], attention: str = "causal", logits: int = 1) -> dict:
    """FLOPs of prefilling ``blocks`` = [(new tokens, tokens already cached), ...] and computing ``logits``
    rows of the LM head. A plain prefill of T tokens is ``[(T, 0)]``."""
    tokens = sum(b for b, _ in blocks)
    linear = 2 * shape.linear_params_per_layer * shape.layers * tokens + 2 * shape.hidden * shape.vocab * logits
    attn = 4 * shape.layers * shape.attn_width * sum(attention_pairs(b, c, attention) for b, c in blocks)
    return dict(linear=linear, attention=attn, total=linear + attn)


@dataclass
class CostReport:
    """What one recording costs under one press chain; bytes and FLOPs as integers, fields documented above."""

    model: str
    chain: str
    duration_s: float
    bytes_per_element: int
    audio_tokens_encoder: int  # after the encoder and encoder_pool, before any press
    audio_tokens: int  # audio entries the LLM keeps (for sst: the SSTs)
    tokens_per_second: float  # audio_tokens / duration
    llm_tokens_processed: int  # tokens the LLM runs forward in prefill (audio + SSTs + prompt)
    prompt_tokens: int
    answer_tokens: int
    kv_tokens: int  # cached after prefill and the whole answer
    kv_bytes: int
    kv_peak_tokens: int  # the most the cache holds at any time (sst: memory + one interval)
    kv_peak_bytes: int
    weight_bytes: int
    weight_bytes_llm: int
    weight_bytes_encoder: int  # encoder + projector
    encoder_windows: int
    encoder_flops: int  # encoder over all windows + projector
    llm_prefill_flops: int
    llm_prefill_linear_flops: int
    llm_prefill_attention_flops: int
    prefill_flops: int  # encoder + LLM prefill
    decode_flops_per_token: int  # the first answer token
    activation_bytes: int  # the largest transient activation (estimate)
    peak_bytes: int  # weights + peak KV + largest activation (estimate)
    attention: str = "causal"
    stages: list = field(default_factory=list)  # [(press label, tokens after it)]

    def to_dict(self) -> dict:
        return asdict(self)


def chain_counts(n_tokens: int, duration_s: float, chain: Sequence[tuple[PressStep, Press]]) -> tuple[list, list]:
    """Token count after each press (asked of the press), and the KV press's prefill blocks [(tokens run, audio
    entries kept)] when the chain ends in one."""
    stages, schedule = [], []
    for step, press in chain:
        if press.variable_length:
            raise PressError(
                f"press {press.name!r} emits a content-dependent number of tokens: the analytic cost model cannot "
                "count it; measure it instead (profile --measure)"
            )
        if press.space == "kv":
            schedule = press.kv_schedule(n_tokens, duration_s)
            n_tokens = sum(kept for _, kept in schedule)
        else:
            n_tokens = press.output_length(n_tokens, duration_s)
        stages.append((step.label(), n_tokens))
    return stages, schedule


def estimate_cost(
    config: SpeechLMConfig,
    duration_s: float,
    chain=None,
    *,
    prompt_tokens: int = 32,
    answer_tokens: int = 64,
    dtype: str = "bf16",
    attention: str = "causal",
    interval_tokens: int = SST_INTERVAL_TOKENS,
    model: str = "",
) -> CostReport:
    """Analytic cost of answering one question about ``duration_s`` seconds of audio.

    The prompt (``prompt_tokens``: template and question) is placed after the audio, as when several questions
    are asked of one prefilled recording; ``answer_tokens`` are generated and cached.
    """
    if not isinstance(duration_s, (int, float)) or not math.isfinite(duration_s) or duration_s <= 0:
        raise ConfigError(f"duration must be a positive number of seconds, got {duration_s!r}")
    if duration_s > MAX_MINUTES * 60:
        raise ConfigError(f"duration {duration_s / 60:g} minutes is beyond the cost model's {MAX_MINUTES} minutes")
    if prompt_tokens < 0 or answer_tokens < 0:
        raise ConfigError("prompt and answer lengths must be >= 0")
    if not isinstance(interval_tokens, int) or interval_tokens < 1:
        raise ConfigError(f"interval_tokens must be a positive integer, got {interval_tokens!r}")
    if dtype not in DTYPE_BYTES:
        raise ConfigError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    b = DTYPE_BYTES[dtype]
    steps = as_chain(chain, config, interval_tokens)
    llm, enc = LLMShape.from_config(config.llm), EncoderShape.from_config(config.encoder)

    n_enc = audio_token_count(int(round(duration_s * config.sample_rate)), config)
    stages, schedule = chain_counts(n_enc, duration_s, steps)
    n_audio = stages[-1][1] if stages else n_enc

    # LLM prefill as blocks of (new tokens, tokens cached before them).
    if schedule:
        blocks, memory, peak = [], 0, 0
        for run, kept in schedule:
            blocks.append((run, memory))
            peak = max(peak, memory + run)
            memory += kept  # what the KV press keeps of the block (SST: the summary tokens)
        if prompt_tokens:
            blocks.append((prompt_tokens, memory))
        act_tokens = max([run for run, _ in schedule] + [prompt_tokens])
    else:
        blocks = [(n_audio + prompt_tokens, 0)]
        peak = 0
        act_tokens = n_audio + prompt_tokens
    prefill = llm_prefill_flops(llm, blocks, attention)
    kv_tokens = n_audio + prompt_tokens + answer_tokens
    kv_peak_tokens = max(kv_tokens, peak)
    kv_per_token = llm.kv_bytes_per_token_element * b

    decode = 2 * llm.linear_params_per_layer * llm.layers + 2 * llm.hidden * llm.vocab
    decode += 4 * llm.layers * llm.attn_width * (n_audio + prompt_tokens + 1)

    # Projector: Linear(d_enc -> hidden), plus Linear(hidden -> hidden) for "mlp"; weights and biases.
    proj_mults = enc.d_model * llm.hidden + (llm.hidden * llm.hidden if config.projector == "mlp" else 0)
    proj_params = proj_mults + llm.hidden * (2 if config.projector == "mlp" else 1)
    windows = max(1, math.ceil(duration_s / config.window_seconds - 1e-9))
    # The projector is counted on every pooled encoder token: an upper bound when an encoder-space press
    # shortens the sequence first.
    encoder_flops = windows * enc.flops_per_window + 2 * proj_mults * n_enc

    w_llm, w_enc = llm.params * b, (enc.params + proj_params) * b
    # Largest transient: the LLM's gated-MLP inputs for one forward block (gate and up outputs beside the
    # residual stream), assuming memory-efficient attention (no T x T score matrix) and no chunked prefill;
    # or one encoder window with its materialized attention scores, whichever is larger.
    act_llm = act_tokens * (2 * llm.intermediate + llm.hidden) * b
    act_enc = (enc.positions * (enc.ffn + enc.d_model) + enc.heads * enc.positions**2) * b
    activation = max(act_llm, act_enc)

    return CostReport(
        model=model,
        chain=" + ".join(st.label() for st, _ in steps) or "none",
        duration_s=float(duration_s),
        bytes_per_element=b,
        audio_tokens_encoder=n_enc,
        audio_tokens=n_audio,
        tokens_per_second=n_audio / duration_s,
        llm_tokens_processed=sum(blk for blk, _ in blocks),
        prompt_tokens=prompt_tokens,
        answer_tokens=answer_tokens,
        kv_tokens=kv_tokens,
        kv_bytes=kv_tokens * kv_per_token,
        kv_peak_tokens=kv_peak_tokens,
        kv_peak_bytes=kv_peak_tokens * kv_per_token,
        weight_bytes=w_llm + w_enc,
        weight_bytes_llm=w_llm,
        weight_bytes_encoder=w_enc,
        encoder_windows=windows,
        encoder_flops=encoder_flops,
        llm_prefill_flops=prefill["total"],
        llm_prefill_linear_flops=prefill["linear"],
        llm_prefill_attention_flops=prefill["attention"],
        prefill_flops=encoder_flops + prefill["total"],
        decode_flops_per_token=decode,
        activation_bytes=activation,
        peak_bytes=w_llm + w_enc + kv_peak_tokens * kv_per_token + activation,
        attention=attention,
        stages=stages,
    )

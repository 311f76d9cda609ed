"""Speech Summarization Tokens (Speech-XL): interval-wise KV compression inside the LLM.

The audio tokens (LLM-space embeddings, possibly already shortened by an earlier press) are cut into
intervals of ``interval_tokens`` tokens. Inside interval ``k`` one learned SST is interleaved after every
``alpha_k`` speech tokens. The LLM runs interval by interval; after each interval the speech tokens' keys and
values are *removed* from the KV cache and only the SSTs' stay, so whatever the question and the answer later
learn about that interval they learn from the SSTs. This is Activation Beacon (FlagEmbedding ``Memory``) on
audio tokens; see ``docs/sst.md`` and the Speech-XL paper, sections 1-2.

Design choices, and why:

(a) Trainable parameters: the SST embeddings only (``self.embeddings``, ``[num_embeddings, dim]``). The LLM
    adapts through LoRA, which the training recipe applies with peft to the whole LLM (the same LoRA that
    recovers quality for the other presses). Activation Beacon's separate beacon q/k/v projections would need
    the attention forward rewritten per layer (a patch of transformers internals, which speechpress does not
    do); LoRA reaches the same place through an ordinary ``llm(...)`` call and works with a peft-wrapped LLM.
    With ``num_embeddings > 1`` the j-th SST of an interval uses embedding ``j % num_embeddings``.
(b) Positions: *time-preserving*. Every token keeps its index in the full interleaved sequence
    ``[prefix, interval 1 speech+SSTs, interval 2 ..., suffix]``, evicted tokens included. Keys enter the cache
    already rotated (transformers caches post-RoPE keys), so they stay valid after eviction with no key
    re-rotation, and the training path is plain ``arange`` positions plus a 4D mask. Activation Beacon's
    compacted positions would keep position ids small but need pre-RoPE caching (a patched attention).
    Cost of this choice: positions grow with the *uncompressed* length (an hour at 25 tokens/s and alpha 8
    reaches about 101k), so for very long audio the LLM needs a RoPE range that long (e.g. YaRN scaling).
    Because ``next_position`` is larger than the cache length, the suffix must be fed with explicit
    ``position_ids`` (``SSTState.step_inputs``); ``llm.generate`` would infer wrong positions
    (use :func:`greedy_generate` on a bare LLM, as ``docs/sst.md`` shows; ``SpeechLM.answer`` does the same).
(c) Attention inside an interval: causal over [prefix + SSTs of earlier intervals + the current interval so
    far] (Activation Beacon "full-coverage"): each SST sees every speech token before it in its interval and
    all kept memory; speech tokens also see earlier SSTs of the same interval. Text after the audio sees
    only the prefix and the SSTs.
(d) ``alpha`` may differ per interval: pass an int, a sequence (one alpha per interval) or a callable
    ``interval_index -> alpha`` to :meth:`prefill`, :meth:`training_inputs` and :meth:`sst_count`; the default
    is the press ratio (the curriculum 2 -> 4 -> 8 changes it per call without rebuilding the press).
(e) Ragged tails: the last interval may hold fewer than ``interval_tokens`` tokens, and a count not divisible
    by alpha gets one extra SST after the remainder, so an interval of ``L`` tokens holds ``ceil(L / alpha)``
    SSTs and no speech token is left without a summary.

Interval length: ``interval_tokens`` (default 256, about 10 s at 25 tokens/s), in tokens of this press's input
so it composes with any earlier press; 256 is divisible by every power-of-two alpha up to 256, so only the last
interval is ragged. Larger intervals mean fewer LLM calls but more transient memory ((cache + interval) x
interval attention scores).

Where things live: the interleaving and the alpha schedule in ``sst_layout.py`` (shared by prefill and the
training mask), the cache surgery, the masks and the decoding state (``KVState``: positions after eviction) in
``speechpress/kv_cache.py``; this module is the press.

Exactness: the training mask is an additive float 4D mask (0 / dtype min) which transformers 5.23 passes
through untouched (``masking_utils._preprocess_mask_arguments`` returns any 4D mask as is); both the
``eager`` (adds it) and ``sdpa`` (takes float masks) attention implementations use it as such, so streaming
and training agree to float rounding. Flash/flex attention cannot take an arbitrary 4D mask and are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from speechpress import kv_cache
from speechpress.errors import ConfigError, PressError
from speechpress.kv_cache import KVState
from speechpress.presses.base import AudioTokens, Press, PressContext, group_spans
from speechpress.presses.registry import register_press
from speechpress.presses.sst_layout import AlphaSpec, Layout, alpha_schedule, interleave

DEFAULT_INTERVAL_TOKENS = 256
SUPPORTED_ATTENTION = ("eager", "sdpa")

def _check_llm(llm: nn.Module) -> None:
    """Refuse LLMs on which the SST mask or the eviction would silently be wrong."""
    config = getattr(llm, "config", None)
    if config is None:
        raise ConfigError("the SST press needs a transformers causal LM (an object with .config)")
    impl = getattr(config, "_attn_implementation", None)
    if impl is not None and impl not in SUPPORTED_ATTENTION:
        raise ConfigError(
            f"the SST press needs attn_implementation 'eager' or 'sdpa' (arbitrary 4D masks); got {impl!r}"
        )
    layer_types = getattr(config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        raise ConfigError(f"the SST press supports full-attention layers only; this LLM has {sorted(set(layer_types))}")


def _decoder(llm: nn.Module) -> nn.Module:
    """The LLM body without the LM head: prefill needs no logits for 90k audio tokens."""
    get = getattr(llm, "get_decoder", None)
    return get() if callable(get) else llm


@dataclass
class SSTState(KVState):
    """What streaming prefill leaves behind: a cache holding only prefix + SST keys/values, and the positions.

    ``next_position`` is the RoPE position of the first token after the audio (time-preserving positions, so
    it counts evicted tokens too); ``kept_tokens`` the cache length right after prefill.
    """

    audio_tokens: int = 0
    sst_tokens: int = 0
    prefix_tokens: int = 0
    intervals: int = 0
    alphas: list[int] = field(default_factory=list)
    sst_spans: torch.Tensor | None = None  # [sst_tokens, 2] seconds each SST summarises, if spans were given


@register_press
class SummaryTokenPress(Press):
    """Interleave a learned SST after every ``alpha`` audio tokens, keep only SST keys/values per interval."""

    name = "sst"
    description = "Speech Summarization Tokens: interval-wise KV compression inside the LLM (Speech-XL)"
    paper = "Speech-XL's mechanism; interval length and SST count per interval are not published (defaults: 256, ceil(L/alpha))"
    space = "kv"
    trainable = True
    query_aware = False

    def __init__(
        self,
        ratio: float | None = None,
        tokens_per_second: float | None = None,
        *,
        dim: int,
        interval_tokens: int = DEFAULT_INTERVAL_TOKENS,
        num_embeddings: int = 1,
        init_std: float = 0.02,
    ):
        super().__init__(ratio=ratio, tokens_per_second=tokens_per_second)
        if ratio is not None and not float(ratio).is_integer():
            raise PressError(f"the SST ratio alpha must be a whole number (one SST per alpha tokens), got {ratio}")
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"SST dim must be a positive integer (the LLM hidden width), got {dim!r}")
        if not isinstance(interval_tokens, int) or interval_tokens < 1:
            raise ConfigError(f"interval_tokens must be a positive integer, got {interval_tokens!r}")
        if not isinstance(num_embeddings, int) or num_embeddings < 1:
            raise ConfigError(f"num_embeddings must be a positive integer, got {num_embeddings!r}")
        self.dim = dim
        self.interval_tokens = interval_tokens
        self.num_embeddings = num_embeddings
        self.embeddings = nn.Parameter(torch.randn(num_embeddings, dim) * init_std)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dim={self.dim}, interval_tokens={self.interval_tokens}, num_embeddings={self.num_embeddings}"

    @torch.no_grad()
    def init_from_token(self, llm: nn.Module, token_id: int) -> None:
        """Start every SST embedding at a vocabulary token's embedding (Activation Beacon uses EOS)."""
        weight = llm.get_input_embeddings().weight
        if weight.shape[-1] != self.dim:
            raise ConfigError(f"LLM width {weight.shape[-1]} differs from the SST dim {self.dim}")
        self.embeddings.copy_(weight[token_id].to(self.embeddings)[None].expand_as(self.embeddings))

    # ---- ratio bookkeeping -------------------------------------------------------------------------------
    def default_alpha(self, n_in: int, duration_s: float | None = None) -> int:
        """The press's own alpha: its ratio, or a tokens-per-second target rounded to a whole alpha."""
        if self.tokens_per_second is not None:
            if duration_s is None or not duration_s > 0:
                raise PressError("an SST tokens-per-second target needs the audio duration (duration_s)")
            return max(1, round(n_in / (duration_s * self.tokens_per_second)))
        return 1 if self.ratio is None else int(self.ratio)

    def intervals(self, n_in: int, alpha: AlphaSpec = None, duration_s: float | None = None, first: int = 0):
        """[(start, end, alpha)] of the audio tokens per interval; ``first`` offsets the alpha schedule index."""
        fn = alpha_schedule(alpha, lambda: self.default_alpha(n_in, duration_s))
        return [
            (s, min(s + self.interval_tokens, n_in), fn(first + k))
            for k, s in enumerate(range(0, n_in, self.interval_tokens))
        ]

    def sst_count(self, n_in: int, alpha: AlphaSpec = None, duration_s: float | None = None) -> int:
        """SSTs (= audio KV entries kept) for ``n_in`` audio tokens: sum over intervals of ceil(L_k / alpha_k)."""
        return sum(math.ceil((e - s) / a) for s, e, a in self.intervals(n_in, alpha, duration_s))

    def output_length(self, n_in: int, duration_s: float | None = None) -> int:
        return self.sst_count(n_in, None, duration_s)

    def kv_schedule(self, n_in: int, duration_s: float | None = None) -> list[tuple[int, int]]:
        """Per interval: its speech tokens and SSTs run through the LLM, only the SSTs stay cached."""
        counts = [(e - s, math.ceil((e - s) / a)) for s, e, a in self.intervals(n_in, None, duration_s)]
        return [(speech + ssts, ssts) for speech, ssts in counts]

    def layout(self, n_in: int, alpha: AlphaSpec = None, duration_s: float | None = None, first: int = 0) -> Layout:
        """Where each of ``n_in`` audio tokens and each SST sits in the interleaved sequence."""
        return interleave(self.intervals(n_in, alpha, duration_s, first), self.num_embeddings)

    def _interleave(self, audio: torch.Tensor, lay: Layout, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Embeddings [m, D] of interleaved positions [start, end): audio rows and SST rows, differentiable in both."""
        src = lay.source[start:end].to(audio.device)
        slot = lay.slot[start:end].to(audio.device)
        speech = audio[src.clamp(min=0)]  # gathers only this range's rows: no copy of the whole audio
        sst = self.embeddings.to(dtype=audio.dtype, device=audio.device)[slot.clamp(min=0)]
        return torch.where((src < 0)[:, None], sst, speech)

    def sst_spans(self, spans: torch.Tensor, alpha: AlphaSpec = None, duration_s: float | None = None) -> torch.Tensor:
        """[n_sst, 2] seconds of source audio each SST summarises (first to last speech token of its group)."""
        n = spans.shape[0]
        starts, ends = [], []
        for s, e, a in self.intervals(n, alpha, duration_s):
            g0 = torch.arange(s, e, a)
            starts.append(g0)
            ends.append(torch.clamp(g0 + a, max=e))
        if not starts:
            return spans.new_zeros(0, 2)
        return group_spans(spans, torch.cat(starts), torch.cat(ends))

    def forward(self, tokens: AudioTokens, context: PressContext | None = None) -> AudioTokens:
        raise PressError(
            "the 'sst' press acts inside the LLM on its KV cache, not on token sequences: "
            "use SummaryTokenPress.prefill (inference) or .training_inputs (training)"
        )

    # ---- streaming inference ------------------------------------------------------------------------------
    def _check_embeds(self, name: str, x: torch.Tensor, batch: int | None = None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise PressError(f"{name} must be [batch, tokens, {self.dim}], got {tuple(x.shape)}")
        if batch is not None and x.shape[0] != batch:
            raise PressError(f"{name} has batch {x.shape[0]}, expected {batch}")

    def prefill(
        self,
        llm: nn.Module,
        prefix_embeds: torch.Tensor | None,
        audio_embeds: torch.Tensor,
        cache=None,
        *,
        alpha: AlphaSpec = None,
        duration_s: float | None = None,
        audio_spans: torch.Tensor | None = None,
    ) -> SSTState:
        """Stream ``prefix`` then the audio interval by interval, evicting each interval's speech keys/values.

        ``cache`` may be None (fresh), a DynamicCache holding earlier, un-evicted context, or an ``SSTState`` to
        continue streaming more audio after it (its alpha schedule continues at the next interval index).
        Runs with the caller's grad mode: wrap in ``torch.no_grad()`` for inference.
        """
        from transformers import DynamicCache

        _check_llm(llm)
        self._check_embeds("audio_embeds", audio_embeds, batch=1)
        if prefix_embeds is None:
            prefix_embeds = audio_embeds.new_zeros(1, 0, self.dim)
        self._check_embeds("prefix_embeds", prefix_embeds, batch=1)
        dtype, device = audio_embeds.dtype, audio_embeds.device

        prev = cache if isinstance(cache, SSTState) else None
        if prev is not None:
            cache = prev.cache
            position = prev.position()
        elif cache is None:
            cache = DynamicCache(config=llm.config)
            position = 0
        else:
            position = int(cache.get_seq_length())
        kv_cache.check_evictable(cache)

        body = _decoder(llm)
        start_position = position

        def run(x: torch.Tensor) -> None:
            nonlocal position
            past = int(cache.get_seq_length())
            body(
                inputs_embeds=x,
                past_key_values=cache,
                position_ids=torch.arange(position, position + x.shape[1], device=device)[None],
                attention_mask=kv_cache.chunk_mask(x.shape[1], past, dtype, device),
                use_cache=True,
            )
            position += x.shape[1]

        n_prefix = prefix_embeds.shape[1]
        if n_prefix:
            run(prefix_embeds)
        n_audio = audio_embeds.shape[1]
        first = prev.intervals if prev is not None else 0
        lay = self.layout(n_audio, alpha, duration_s, first=first)
        audio = audio_embeds[0]
        for start, end in lay.bounds:
            kept_before = int(cache.get_seq_length())
            run(self._interleave(audio, lay, start, end)[None])
            kept = torch.cat(
                [torch.arange(kept_before), kept_before + torch.nonzero(lay.is_sst[start:end]).flatten()]
            ).to(device)
            kv_cache.keep(cache, kept)  # the interval's speech keys/values are freed, not masked

        spans = None
        if audio_spans is not None:
            spans = self.sst_spans(audio_spans.reshape(-1, 2)[:n_audio], alpha, duration_s)
        if prev is not None and prev.sst_spans is not None and spans is not None:
            spans = torch.cat([prev.sst_spans, spans])
        n_sst = lay.num_sst
        assert position == start_position + n_prefix + len(lay)
        return SSTState(
            cache=cache,
            next_position=position,
            kept_tokens=int(cache.get_seq_length()),
            audio_tokens=n_audio + (prev.audio_tokens if prev else 0),
            sst_tokens=n_sst + (prev.sst_tokens if prev else 0),
            prefix_tokens=n_prefix + (prev.prefix_tokens if prev else 0),
            intervals=len(lay.bounds) + first,
            alphas=(prev.alphas if prev else []) + lay.alphas,
            sst_spans=spans,
            dtype=dtype,
            device=device,
        )

    # ---- training: one forward, 4D mask ----------------------------------------------------------------------
    def training_inputs(
        self,
        prefix_embeds: torch.Tensor,
        audio_embeds: torch.Tensor,
        audio_lengths: torch.Tensor,
        suffix_embeds: torch.Tensor,
        suffix_lengths: torch.Tensor | None = None,
        alpha: AlphaSpec = None,
        *,
        prefix_lengths: torch.Tensor | None = None,
        durations: torch.Tensor | None = None,
    ) -> dict:
        """One right-padded sequence per row, [prefix, interleaved audio + SSTs, suffix], with the 4D mask and
        positions under which ``llm(inputs_embeds=..., attention_mask=..., position_ids=...)`` computes exactly
        what streaming prefill + suffix computes.

        Returns ``inputs_embeds`` [B, T, D], ``attention_mask`` [B, 1, T, T] (additive float), ``position_ids``
        [B, T], ``suffix_mask`` [B, T] (True on suffix tokens), ``suffix_index`` [B, S] (sequence index of each
        suffix token; 0 past ``suffix_lengths``), ``suffix_start`` [B] (= streaming ``next_position``),
        ``sst_mask`` [B, T] and ``lengths`` [B] (valid tokens per row). The alpha schedule is shared by rows.
        """
        B = audio_embeds.shape[0]
        self._check_embeds("audio_embeds", audio_embeds)
        self._check_embeds("prefix_embeds", prefix_embeds, batch=B)
        self._check_embeds("suffix_embeds", suffix_embeds, batch=B)
        dtype, device = audio_embeds.dtype, audio_embeds.device
        a_len = _lengths(audio_lengths, B, audio_embeds.shape[1], "audio_lengths")
        s_len = _lengths(suffix_lengths, B, suffix_embeds.shape[1], "suffix_lengths")
        p_len = _lengths(prefix_lengths, B, prefix_embeds.shape[1], "prefix_lengths")

        rows, groups, kepts, sst_flags, suffix_flags, starts = [], [], [], [], [], []
        for b in range(B):
            dur = None if durations is None else float(durations[b])
            lay = self.layout(a_len[b], alpha, dur)
            k_int = len(lay.bounds)
            p, s = p_len[b], s_len[b]
            rows.append(
                torch.cat([prefix_embeds[b, :p], self._interleave(audio_embeds[b, : a_len[b]], lay), suffix_embeds[b, :s]])
            )
            # group: -1 prefix, k interval, k_int suffix; kept: prefix and SSTs (what the cache keeps)
            groups.append(torch.cat([torch.full((p,), -1), lay.interval, torch.full((s,), k_int)]))
            kepts.append(torch.cat([torch.ones(p, dtype=torch.bool), lay.is_sst, torch.zeros(s, dtype=torch.bool)]))
            sst_flags.append(torch.cat([torch.zeros(p, dtype=torch.bool), lay.is_sst, torch.zeros(s, dtype=torch.bool)]))
            suffix_flags.append(torch.cat([torch.zeros(p + len(lay), dtype=torch.bool), torch.ones(s, dtype=torch.bool)]))
            starts.append(p + len(lay))

        lengths = [r.shape[0] for r in rows]
        T = max(lengths)
        pad_group = -2  # padding: its own group, never kept, so no real token can see it
        inputs = torch.stack([torch.cat([r, r.new_zeros(T - r.shape[0], self.dim)]) for r in rows])
        group = torch.stack([torch.cat([g, torch.full((T - g.numel(),), pad_group)]) for g in groups]).to(device)
        kept = torch.stack([torch.cat([k, torch.zeros(T - k.numel(), dtype=torch.bool)]) for k in kepts]).to(device)
        sst_mask = torch.stack([torch.cat([k, torch.zeros(T - k.numel(), dtype=torch.bool)]) for k in sst_flags])
        suffix_mask = torch.stack([torch.cat([k, torch.zeros(T - k.numel(), dtype=torch.bool)]) for k in suffix_flags])

        steps = torch.arange(T, device=device)
        causal = steps[None, :, None] >= steps[None, None, :]  # [1, T(q), T(k)]
        visible = kept[:, None, :] | (group[:, :, None] == group[:, None, :])
        attention_mask = kv_cache.additive_mask(causal & visible, dtype)[:, None]

        S = suffix_embeds.shape[1]
        suffix_index = torch.zeros(B, S, dtype=torch.long)
        for b in range(B):
            suffix_index[b, : s_len[b]] = starts[b] + torch.arange(s_len[b])
        return dict(
            inputs_embeds=inputs,
            attention_mask=attention_mask,
            position_ids=steps[None].expand(B, T).clone(),
            suffix_mask=suffix_mask.to(device),
            suffix_index=suffix_index.to(device),
            suffix_start=torch.tensor(starts, device=device),
            sst_mask=sst_mask.to(device),
            lengths=torch.tensor(lengths, device=device),
        )


def _lengths(lengths: torch.Tensor | None, batch: int, width: int, name: str) -> list[int]:
    if lengths is None:
        return [width] * batch
    values = [int(v) for v in torch.as_tensor(lengths).reshape(-1).tolist()]
    if len(values) != batch:
        raise PressError(f"{name} has {len(values)} entries for a batch of {batch}")
    if any(v < 0 or v > width for v in values):
        raise PressError(f"{name} must lie in [0, {width}], got {values}")
    return values

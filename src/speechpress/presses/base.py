"""The press contract: every compression method takes audio tokens with their time spans and returns fewer.

A press is an ``nn.Module`` (so trainable presses carry parameters) with four class attributes that the
registry, the CLI and the result rows read: ``name``, ``description``, ``trainable`` and ``query_aware``, plus
``space``, which says where in the data path it acts:

* ``"encoder"``: on encoder frames, before the projector (pooling, segmentation, Q-Formers);
* ``"llm"``: on LLM-space embeddings, after the projector (pruning that reads the LLM: SpeechPrune);
* ``"kv"``: inside the LLM, on its KV cache (Speech Summarization Tokens).

Every press also declares how many tokens it emits (:meth:`Press.output_length`), or sets ``variable_length``
when that depends on the content; the cost model and ``info`` ask the press, never its name. A KV press also
says how it runs the audio through the LLM (:meth:`Press.kv_schedule`).

Most presses only implement :meth:`Press.compress_row`, which sees one un-padded, non-empty sequence at a
time, so padding can never change a result and ragged batches need no special care; ``self.target(spans)``
is the row's output length. Pruning presses subclass :class:`ScorerPress` and only say how tokens score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from speechpress.errors import PressError
from speechpress.kv_cache import KVState, chunked_prefill
from speechpress.ratio import check_ratio, target_length

SPACES = ("encoder", "llm", "kv")


def stretch_row(embeddings: torch.Tensor, spans: torch.Tensor, offset: float, duration: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One un-padded row's tokens of [offset, offset + duration), spans made relative (``AudioTokens.stretch``)."""
    middle = spans.mean(dim=1)
    inside = (middle >= offset) & (middle < offset + duration)
    return embeddings[inside], spans[inside] - offset


@dataclass
class AudioTokens:
    """A right-padded batch of audio token sequences and the audio time each token covers.

    ``spans[b, i] = (start, end)`` in seconds of source audio; spans are monotonic within a row.
    """

    embeddings: torch.Tensor  # [B, T, D]
    lengths: torch.Tensor  # [B] long: valid tokens per row
    spans: torch.Tensor  # [B, T, 2] float64 seconds; zero on padding
    duration: float | None = None  # seconds of the recording encoded (set by SpeechLM.encode; presses drop it)

    @property
    def batch_size(self) -> int:
        return self.embeddings.shape[0]

    @property
    def dim(self) -> int:
        return self.embeddings.shape[-1]

    @property
    def mask(self) -> torch.Tensor:
        """[B, T] bool, True on real tokens."""
        steps = torch.arange(self.embeddings.shape[1], device=self.embeddings.device)
        return steps[None, :] < self.lengths.to(self.embeddings.device)[:, None]

    def row(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The un-padded embeddings [n, D] and spans [n, 2] of row ``b``."""
        n = int(self.lengths[b])
        return self.embeddings[b, :n], self.spans[b, :n]

    def rows(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self.row(b) for b in range(self.batch_size)]

    def stretch(self, offset: float, duration: float, b: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Row ``b``'s tokens of the stretch [offset, offset + duration) of the audio, spans made relative to it.

        A token belongs to the stretch when the middle of its span lies inside, so consecutive stretches share no
        token and miss none: how training (data.slice_recordings) and benchmarks cut an utterance out of the
        encoding of its whole recording."""
        return stretch_row(*self.row(b), offset, duration)

    @classmethod
    def from_rows(cls, rows: list[tuple[torch.Tensor, torch.Tensor]]) -> "AudioTokens":
        """Pad un-padded (embeddings, spans) rows into one batch."""
        if not rows:
            raise PressError("an AudioTokens batch needs at least one row")
        dim = rows[0][0].shape[-1]
        longest = max(r[0].shape[0] for r in rows)
        spans = torch.zeros(len(rows), longest, 2, dtype=torch.float64, device=rows[0][0].device)
        lengths = torch.zeros(len(rows), dtype=torch.long)
        # Build with torch.stack over padded rows so autograd flows into trainable presses.
        padded = []
        for b, (e, s) in enumerate(rows):
            n = e.shape[0]
            lengths[b] = n
            padded.append(torch.cat([e, e.new_zeros(longest - n, dim)], dim=0) if n < longest else e)
            spans[b, :n] = s.to(torch.float64)
        emb = torch.stack(padded, dim=0)
        return cls(embeddings=emb, lengths=lengths, spans=spans)


@dataclass
class PressContext:
    """What a press may read besides the audio tokens. Only query-aware presses read the question."""

    query_embeds: torch.Tensor | None = None  # [B, L, D_llm]: the question's token embeddings (LLM input space)
    query_lengths: torch.Tensor | None = None  # [B]
    llm: nn.Module | None = None  # the causal LM, for presses that borrow its weights (SpeechPrune)
    generator: torch.Generator | None = None

    def query_row(self, b: int) -> torch.Tensor | None:
        if self.query_embeds is None:
            return None
        n = self.query_embeds.shape[1] if self.query_lengths is None else int(self.query_lengths[b])
        return self.query_embeds[b, :n]


class Press(nn.Module):
    """Base class of every compression method. Subclasses set the class attributes and ``compress_row``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # How the published method is run with this press: the options that give the paper's setting, or that the
    # defaults are the paper's (``speechpress presses`` prints it).
    paper: ClassVar[str] = ""
    space: ClassVar[str] = "encoder"
    trainable: ClassVar[bool] = False
    query_aware: ClassVar[bool] = False
    # True when the output count depends on the content: output_length is then only a bound, and the analytic
    # cost model refuses the press instead of costing it wrongly.
    variable_length: ClassVar[bool] = False
    # True when the press has a target of its own (hfq's 50 tokens per window), so it needs no ratio.
    default_target: ClassVar[bool] = False
    # True when, at a whole ratio k, the press acts on consecutive groups of k tokens from the row's start, each
    # on its own (uniform pooling, downsampling): it can then run while the recording is being encoded.
    uniform: ClassVar[bool] = False

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this press cannot run in this environment (a missing or incompatible optional package), or None."""
        return None

    def __init__(self, ratio: float | None = None, tokens_per_second: float | None = None):
        super().__init__()
        check_ratio(ratio, tokens_per_second)
        self.ratio = ratio
        self.tokens_per_second = tokens_per_second

    def output_length(self, n_in: int, duration_s: float | None = None) -> int:
        """How many tokens this press emits for ``n_in`` tokens covering ``duration_s`` seconds."""
        return target_length(n_in, self.ratio, self.tokens_per_second, duration_s)

    def kv_schedule(self, n_in: int, duration_s: float | None = None) -> list[tuple[int, int]]:
        """A KV press's prefill of ``n_in`` audio tokens as blocks of (tokens run through the LLM, audio KV
        entries kept after the block). Default: one full prefill, then ``output_length`` entries kept (the
        kvpress way); SST streams interval by interval."""
        return [(n_in, self.output_length(n_in, duration_s))]

    def prefill(self, llm: nn.Module, prefix_embeds: torch.Tensor, audio_embeds: torch.Tensor, *,
                duration_s: float | None = None, audio_spans: torch.Tensor | None = None) -> KVState:
        """Where the chain meets the LLM: run [prefix + audio] into a KV cache. Token presses have already acted,
        so the default is a full prefill (in chunks, ``kv_cache.chunked_prefill``: the cache of one forward, the
        activations of a chunk); a KV press overrides this to compress the cache as it goes, reading
        the recording's ``duration_s`` (a tokens-per-second target) and the tokens' ``audio_spans`` if it needs."""
        return chunked_prefill(llm, prefix_embeds, audio_embeds)

    def prefill_positions(self, n_audio: int, duration_s: float | None = None) -> int:
        """RoPE positions the audio takes in the LLM: every token run through it (a KV press that evicts keeps
        time-preserving positions, so its schedule's tokens count, evicted or not)."""
        if self.space != "kv":
            return n_audio
        return sum(run for run, _ in self.kv_schedule(n_audio, duration_s))

    def forward(self, tokens: AudioTokens, context: PressContext | None = None) -> AudioTokens:
        context = context or PressContext()
        if self.query_aware and context.query_embeds is None:
            raise PressError(f"press {self.name!r} reads the question: pass one (query-aware method)")
        # An empty row stays empty: no press has anything to say about no audio.
        out = [self.compress_row(e, s, context, b) if e.shape[0] else (e, s) for b, (e, s) in enumerate(tokens.rows())]
        return AudioTokens.from_rows(out)

    def target(self, spans: torch.Tensor) -> int:
        """The output length of one row with ``spans`` [n, 2]."""
        return self.output_length(spans.shape[0], span_duration(spans))

    def whole_ratio(self) -> int | None:
        """k when the target is a whole ratio k (not a tokens-per-second target), else None."""
        k = self.ratio
        if self.tokens_per_second is None and k is not None and float(k).is_integer():
            return int(k)
        return None

    def stream_group(self) -> int | None:
        """Tokens per independent group when the press can run on a recording while it is encoded, holding only
        an unfinished group (``presses.streaming``); None when it needs the whole row."""
        return self.whole_ratio() if self.uniform else None

    def uniform_groups(self, n: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Contiguous groups (starts, ends) for uniform pooling or sampling: a whole ratio k gives kernel-k,
        stride-k groups (the last may be shorter, exactly like ``x[::k]``); otherwise ``n_out`` equal groups."""
        k = self.whole_ratio()
        if k is not None:
            starts = torch.arange(0, n, k)
            return starts, torch.clamp(starts + k, max=n)
        return equal_groups(n, n_out)

    def compress_row(
        self, embeddings: torch.Tensor, spans: torch.Tensor, context: PressContext, index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compress one un-padded sequence ``embeddings`` [n >= 1, D] with ``spans`` [n, 2]; row ``index`` of the
        batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement compress_row")

    def extra_repr(self) -> str:
        target = f"ratio={self.ratio}" if self.tokens_per_second is None else f"tokens_per_second={self.tokens_per_second}"
        return target


class ScorerPress(Press):
    """Score-then-keep pruning (kvpress' scorer presses): ``score`` rates every token of a row and the
    ``target`` best survive, in temporal order (ties go to the earlier token). A press whose choice is more than
    one ranking (SpeechPrune's phases) overrides ``select`` instead."""

    def score(self, embeddings: torch.Tensor, spans: torch.Tensor, context: PressContext, index: int) -> torch.Tensor:
        """[n] scores of one row's tokens; higher is kept first."""
        raise NotImplementedError(f"{type(self).__name__} must implement score (or select)")

    def select(self, embeddings: torch.Tensor, spans: torch.Tensor, context: PressContext, index: int, n_out: int) -> torch.Tensor:
        """Ascending indices of the ``n_out`` tokens that survive."""
        return top_in_order(self.score(embeddings, spans, context, index), n_out)

    def compress_row(self, embeddings, spans, context: PressContext, index: int):
        keep = self.select(embeddings, spans, context, index, self.target(spans))
        return embeddings[keep.to(embeddings.device)], spans[keep.to(spans.device)]


def top_in_order(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` highest scores along the last dimension (ties: earlier first), returned in
    ascending (temporal) order; a [B, H, n] input gives one choice per row ([B, H, count])."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    return order[..., :count].sort(dim=-1).values


def row_generator(seed: int, context: PressContext) -> torch.Generator:
    """The caller's generator when given, else a fresh one at ``seed``: a row's draws then depend only on the
    row and the seed, never on what it is batched with (shared by the random baselines)."""
    if context.generator is not None:
        return context.generator
    return torch.Generator().manual_seed(int(seed))


def group_spans(spans: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Spans of token groups [starts[i], ends[i]) : from the first member's start to the last member's end."""
    return torch.stack([spans[starts, 0], spans[ends - 1, 1]], dim=-1)


def equal_groups(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``n_in`` positions into ``n_out`` contiguous groups whose sizes differ by at most one."""
    bounds = torch.div(torch.arange(n_out + 1) * n_in, n_out, rounding_mode="floor")
    return bounds[:-1], bounds[1:]


def segment_mean(embeddings: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Mean of each contiguous group [starts[i], ends[i]) of ``embeddings`` [n, D] (differentiable)."""
    sizes = (ends - starts).to(embeddings.device)
    group_of = torch.repeat_interleave(torch.arange(len(starts), device=embeddings.device), sizes)
    sums = embeddings.new_zeros(len(starts), embeddings.shape[1]).index_add(0, group_of, embeddings[: int(ends[-1])])
    return sums / sizes.to(embeddings.dtype)[:, None]


def span_duration(spans: torch.Tensor) -> float:
    """Seconds a row of spans [n, 2] covers (0 for an empty row): the ``duration_s`` of ``output_length``."""
    return float(spans[-1, 1] - spans[0, 0]) if spans.shape[0] else 0.0


def resolve_heads(dim: int, num_heads: int | None) -> int:
    """Attention heads of a trainable press: ``dim // 64`` by default (Whisper's and BERT's 64-wide heads), so
    building a press from the model width alone gives the published head count (1280 -> 20, 768 -> 12)."""
    heads = max(1, dim // 64) if num_heads is None else int(num_heads)
    if heads < 1 or dim % heads:
        raise PressError(f"num_heads must be a positive divisor of the width {dim}, got {num_heads}")
    return heads

"""SpeechPrune (Lin et al. 2024): training-free, query-aware pruning of LLM-space audio tokens, in two phases.

Phase 1, speech-text similarity with frame budgets. Token score ``s_t`` = mean over the question's tokens of
``cos(S_t, T_j)``. Tokens are grouped into ~1 s frames by span time (frame ``floor((start - row_start) /
frame_seconds)``); frame score = sum of its tokens' ``s_t``; budgets ``p = softmax(frame scores)`` and
``n_i = min(frame size, floor(B1 * p_i))``; each frame keeps its top-``n_i`` tokens by ``s_t``. Rounding
remainder (the paper leaves it open): the ``B1 - sum(n_i)`` tokens left by flooring, and by frames whose share
exceeds their size, go to the highest-``s_t`` tokens not yet kept anywhere in the row. Ties go to the earlier
token everywhere, so the selection is deterministic.

Phase 2, binarised first-layer attention (no text). ``Q = sign(S) sign(W_Q)^T``, ``K = sign(S) sign(W_K)^T``
with W_Q, W_K from ``llm.model.layers[0].self_attn`` (biases and RoPE are left out, as in the paper's
formula; under peft the base weights are used). Per head ``A = softmax(Q K^T / sqrt(d_head))`` with no causal
mask; with grouped-query attention each KV head is repeated for the query heads it serves (transformers'
``repeat_kv`` order). Score = attention *received*: the column mean of A over queries and heads (the row
mean of a row-softmax is constant). The top-``n_out`` tokens survive, in temporal order. Attention rows are
computed in chunks, so memory stays bounded for hour-long inputs.

Budgets, as the paper sets them: phase 1 keeps an absolute budget ``B1 = phase1_tokens`` (750 by default: the
30 s that Qwen2-Audio reads, 25 tokens/s), and the pruning rate PR is relative to B1 (the paper's PR 0.2 ... 0.8
keep 600 ... 150 tokens). Give either ``pruning_rate`` (the paper's knob: output ``round((1 - PR) B1)``) or a
ratio / tokens-per-second target (the speechpress language: output ``ceil(n / k)``, phase 1 then keeps
``max(B1, output)``); ``ratio.py`` converts between them. ``phase1_tokens=None`` switches to a relative budget,
``B1 = ceil(phase1_factor * output)``. B1 never exceeds the input. Phases can be switched off for the paper's
ablations (``phase1=False`` or ``phase2=False``); the one left selects the output directly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from speechpress.errors import PressError
from speechpress.presses.base import PressContext, ScorerPress, top_in_order
from speechpress.presses.registry import register_press

ATTENTION_CHUNK_ELEMENTS = 1 << 24  # attention scores held at once in phase 2
SCORE_CHUNK_TOKENS = 4096  # audio tokens normalized at once in phase 1
PAPER_PHASE1_TOKENS = 750  # B1: the 30 s Qwen2-Audio reads at 25 tokens/s, the paper's phase-1 output


def first_layer_attention(llm: nn.Module | None) -> tuple[nn.Module, int, int, int]:
    """The first decoder layer's attention module and (query heads, KV heads, head width) of ``llm``."""
    if llm is None:
        raise PressError(
            "speechprune phase 2 borrows W_Q/W_K from the LLM's first decoder layer: pass the causal LM as "
            "PressContext(llm=...), or build the press with phase2=False"
        )
    decoder = llm.get_decoder() if hasattr(llm, "get_decoder") else getattr(llm, "model", None)
    layers = getattr(decoder, "layers", None)
    attn = getattr(layers[0], "self_attn", None) if layers is not None and len(layers) else None
    if attn is None or not hasattr(attn, "q_proj") or not hasattr(attn, "k_proj"):
        raise PressError(
            f"speechprune needs a decoder-only LM whose layers[0].self_attn has q_proj/k_proj; got {type(llm).__name__}"
        )
    config = llm.config.get_text_config() if hasattr(llm.config, "get_text_config") else llm.config
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = getattr(config, "head_dim", None) or attn.q_proj.weight.shape[0] // heads
    return attn, heads, kv_heads, int(head_dim)


@register_press
class SpeechPrunePress(ScorerPress):
    name = "speechprune"
    description = "query-aware two-phase pruning: text similarity, then binarised first-layer attention (SpeechPrune)"
    paper = "paper: phase1_tokens=750 (default) and pruning_rate=PR; a ratio sets the output instead"
    space = "llm"
    query_aware = True

    def __init__(
        self,
        ratio: float | None = None,
        tokens_per_second: float | None = None,
        *,
        phase1_tokens: int | None = PAPER_PHASE1_TOKENS,
        pruning_rate: float | None = None,
        phase1_factor: float = 2.0,
        frame_seconds: float = 1.0,
        phase1: bool = True,
        phase2: bool = True,
    ):
        super().__init__(ratio, tokens_per_second)
        if not (phase1 or phase2):
            raise PressError("speechprune needs at least one of phase1 and phase2")
        if phase1_tokens is not None and (isinstance(phase1_tokens, bool) or not isinstance(phase1_tokens, int) or phase1_tokens < 1):
            raise PressError(f"phase1_tokens (the phase-1 budget B1) must be a whole number >= 1 or None, got {phase1_tokens!r}")
        if pruning_rate is not None:
            if isinstance(pruning_rate, bool) or not isinstance(pruning_rate, (int, float)) or not 0 <= pruning_rate < 1:
                raise PressError(f"pruning_rate must be in [0, 1) (the share of B1 that phase 2 removes), got {pruning_rate!r}")
            if ratio is not None or tokens_per_second is not None:
                raise PressError("give speechprune either a pruning_rate or a ratio / tokens-per-second target, not both")
            if phase1_tokens is None:
                raise PressError("pruning_rate is relative to the absolute phase-1 budget: set phase1_tokens")
        if not phase1_factor >= 1:
            raise PressError(f"phase1_factor must be >= 1 (phase 1 keeps at least the final budget), got {phase1_factor}")
        if not frame_seconds > 0:
            raise PressError(f"frame_seconds must be > 0, got {frame_seconds}")
        self.phase1_tokens = phase1_tokens
        self.pruning_rate = None if pruning_rate is None else float(pruning_rate)
        self.phase1_factor, self.frame_seconds = float(phase1_factor), float(frame_seconds)
        self.phase1, self.phase2 = phase1, phase2

    def output_length(self, n_in: int, duration_s: float | None = None) -> int:
        if self.pruning_rate is None:
            return super().output_length(n_in, duration_s)
        if n_in <= 0:
            return 0
        return max(1, min(n_in, round((1 - self.pruning_rate) * min(n_in, self.phase1_tokens))))

    def phase1_budget(self, n_in: int, n_out: int) -> int:
        """B1: what phase 1 keeps of ``n_in`` tokens when the final output is ``n_out``."""
        if not self.phase2:
            return n_out
        if self.phase1_tokens is not None:
            return min(n_in, max(n_out, self.phase1_tokens))
        return min(n_in, math.ceil(self.phase1_factor * n_out - 1e-9))

    def select(self, embeddings, spans, context: PressContext, index: int, n_out: int) -> torch.Tensor:
        """Phase 1 keeps a frame-budgeted share by similarity to the question, phase 2 ranks what is left by
        binarised first-layer attention."""
        n = embeddings.shape[0]
        if self.phase2:
            layer = first_layer_attention(context.llm)  # fail early, even when nothing needs pruning
        keep = torch.arange(n, device=embeddings.device)
        if self.phase1:
            query = context.query_row(index)
            if query is None or query.shape[0] == 0:
                raise PressError(f"speechprune: row {index} has an empty question")
            if query.shape[-1] != embeddings.shape[-1]:
                raise PressError(
                    f"speechprune compares LLM-space audio tokens (width {embeddings.shape[-1]}) with the question's "
                    f"token embeddings (width {query.shape[-1]}): put it after the projector"
                )
            keep = self.similarity_select(embeddings, spans, query, self.phase1_budget(n, n_out))
        if self.phase2 and keep.numel() > n_out:
            scores = self.attention_received(embeddings[keep], *layer)
            keep = keep[top_in_order(scores, n_out)]
        return keep

    def token_scores(self, embeddings: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Mean cosine similarity of each audio token to the question's tokens: [n]. In chunks of tokens, so no
        normalized copy of hours of tokens is held beside them."""
        t = F.normalize(query.detach().float().to(embeddings.device), dim=-1)
        scores = torch.empty(embeddings.shape[0], dtype=torch.float32, device=embeddings.device)
        for lo in range(0, embeddings.shape[0], SCORE_CHUNK_TOKENS):
            s = F.normalize(embeddings[lo : lo + SCORE_CHUNK_TOKENS].detach().float(), dim=-1)
            scores[lo : lo + SCORE_CHUNK_TOKENS] = (s @ t.T).mean(dim=1)
        return scores

    def similarity_select(self, embeddings, spans, query, budget: int) -> torch.Tensor:
        """Phase 1: ascending indices of ``budget`` tokens chosen by frame budgets and token similarity."""
        n = embeddings.shape[0]
        if budget >= n:
            return torch.arange(n, device=embeddings.device)
        scores = self.token_scores(embeddings, query)
        dev = scores.device
        offset = ((spans[:, 0] - spans[0, 0]) / self.frame_seconds + 1e-6).floor().long()
        _, frame = torch.unique_consecutive(offset, return_inverse=True)
        frame = frame.to(dev)
        frames = int(frame.max()) + 1
        sizes = torch.bincount(frame, minlength=frames)
        frame_score = torch.zeros(frames, dtype=scores.dtype, device=dev).index_add(0, frame, scores)
        share = torch.softmax(frame_score.double(), dim=0)
        quota = torch.minimum(torch.floor(budget * share).long(), sizes)
        # Rank tokens inside their frame: by score (desc), ties by position; then stable by frame.
        by_score = torch.sort(scores, descending=True, stable=True).indices
        order = by_score[torch.sort(frame[by_score], stable=True).indices]
        first_of_frame = torch.cumsum(sizes, 0) - sizes
        rank = torch.arange(n, device=dev) - first_of_frame[frame[order]]
        chosen = torch.zeros(n, dtype=torch.bool, device=dev)
        chosen[order[rank < quota[frame[order]]]] = True
        left = budget - int(chosen.sum())
        if left > 0:
            rest = torch.where(chosen, torch.full_like(scores, -math.inf), scores)
            chosen[torch.sort(rest, descending=True, stable=True).indices[:left]] = True
        return torch.nonzero(chosen).flatten()

    def attention_received(self, x: torch.Tensor, attn: nn.Module, heads: int, kv_heads: int, head_dim: int) -> torch.Tensor:
        """Phase 2: mean attention each token receives under binarised first-layer W_Q/W_K: [m]."""
        wq = attn.q_proj.weight.detach()
        wk = attn.k_proj.weight.detach()
        if wq.shape[1] != x.shape[-1]:
            raise PressError(f"speechprune: the LLM's width is {wq.shape[1]} but the audio tokens have {x.shape[-1]}")
        if heads % kv_heads or wq.shape[0] != heads * head_dim or wk.shape[0] != kv_heads * head_dim:
            raise PressError("speechprune: the first layer's q_proj/k_proj shapes do not match the LLM config's heads")
        m = x.shape[0]
        xb = torch.sign(x.detach().float())
        q = (xb @ torch.sign(wq.float().to(xb.device)).T).view(m, heads, head_dim).transpose(0, 1)
        k = (xb @ torch.sign(wk.float().to(xb.device)).T).view(m, kv_heads, head_dim).transpose(0, 1)
        k = k.repeat_interleave(heads // kv_heads, dim=0)  # kv head j serves query heads j*g .. j*g+g-1
        received = torch.zeros(m, dtype=torch.float64, device=xb.device)
        chunk = max(1, ATTENTION_CHUNK_ELEMENTS // (heads * m))
        scale = 1.0 / math.sqrt(head_dim)
        for lo in range(0, m, chunk):
            probs = torch.softmax(q[:, lo : lo + chunk] @ k.transpose(1, 2) * scale, dim=-1)
            received += probs.sum(dim=(0, 1)).double()
        return received / (heads * m)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, phase1_tokens={self.phase1_tokens}, pruning_rate={self.pruning_rate}, "
            f"phase1_factor={self.phase1_factor}, frame_seconds={self.frame_seconds}, "
            f"phase1={self.phase1}, phase2={self.phase2}"
        )

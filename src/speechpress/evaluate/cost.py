"""Measured cost of a real prefill: KV bytes the cache really holds, peak memory, latency and counted FLOPs.

The analytic model (``speechpress.cost_model``) says what a run *should* cost from the architecture; this module
says what it *did* cost, with the same field names where both exist, so the two can be set side by side (the
eval runner writes both into every row; ``speechpress profile --measure`` prints both).

* KV bytes: the bytes of the key and value tensors in the cache after prefill (what a KV press really evicted
  is gone from it; a press that only masked would show no saving here).
* Peak memory: CUDA ``max_memory_allocated`` after ``reset_peak_memory_stats`` (so per measured span), or on
  CPU the process' peak resident set size, which never goes down: on CPU a later, smaller run reports the peak
  of an earlier, larger one in the same process.
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` around a whole prefill (log-mel, encoder, projector,
  presses, LLM). It counts SDPA as dense ``T x T`` attention, so the analytic figure it is compared with is
  ``attention="dense"``. PyTorch registers no formula for the CPU flash-attention kernel, so one is added here
  (the same formula as the CUDA kernels); without it CPU counts would miss all attention.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from speechpress import kv_cache
from speechpress.errors import ConfigError
from speechpress.memory import peak_memory_bytes
from speechpress.cost_model import estimate_cost

TORCH_DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


# ------------------------------------------------------------------------------------------------- memory
def peak_memory_kind(device) -> str:
    return "cuda_max_allocated" if torch.device(device).type == "cuda" else "process_peak_rss"


def reset_peak_memory(device) -> None:
    """Start a new peak on CUDA; on CPU nothing can be reset (peak RSS is monotone per process)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


cache_bytes = kv_cache.nbytes  # what the cache really holds, counted where the cache is changed


# -------------------------------------------------------------------------------------------------- FLOPs
def _sdpa_shapes_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter():
    """A FlopCounterMode that also counts the CPU flash-attention kernel (as dense attention, like the CUDA ones)."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    custom = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"):
        op = getattr(aten, name, None)
        if op is not None:
            custom[op] = _sdpa_shapes_flops
    return FlopCounterMode(display=False, custom_mapping=custom)


def count_prefill_flops(model, audio, chain, question: str | None = None) -> dict:
    """FLOPs of one prefill, in total and by part: encoder, projector, LLM, other (log-mel features, presses).

    Runs a prefill of its own (untimed, its cache thrown away), so timed prefills never run under the counter.
    """
    counter = flop_counter()
    # The counter's module tracker hooks autograd on inputs that require grad (learned press queries), which
    # fails under inference_mode; gradients are never needed here, so switch them off for the count.
    params = [p for m in [model, *chain] for p in m.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        with counter:
            model.prefill(audio, chain, question=question)
    finally:
        for p in params:
            p.requires_grad_(True)
    counts = counter.get_flop_counts()
    total = int(sum(counts.get("Global", {}).values()))

    def part(*modules) -> int:
        names = {type(m).__name__ for m in modules if m is not None}
        return int(sum(sum(counts.get(n, {}).values()) for n in names))

    encoder = part(model.encoder)
    projector = part(model.projector) if not isinstance(model.projector, torch.nn.Identity) else 0
    llm = part(model.llm, getattr(model.llm, "base_model", None))
    return dict(total=total, encoder=encoder, projector=projector, llm=llm, other=total - encoder - projector - llm)


# ------------------------------------------------------------------------------------------------ analytic
def chain_steps(chain) -> list:
    """The presses of a resolved chain that the analytic model asks (identity changes nothing)."""
    return [p for p in chain if p.name != "identity"]


def analytic_prefill(model, chain, duration_s: float, prefix_tokens: int, attention: str = "dense"):
    """The analytic CostReport matching what a SpeechLM prefill runs: the prompt prefix before the audio, no
    answer yet. None (with the reason) when the cost model cannot describe this model."""
    try:
        return estimate_cost(
            model.config, duration_s, chain_steps(chain), prompt_tokens=prefix_tokens, answer_tokens=0,
            dtype=TORCH_DTYPES.get(model.dtype, "fp32"), attention=attention,
        ), None
    except Exception as err:  # a backend config the cost model does not know: report it, do not fail the run
        return None, f"{type(err).__name__}: {err}"


# ----------------------------------------------------------------------------------------- profile --measure
def noise(duration_s: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Quiet noise of exactly ``duration_s``: token counts, cache and FLOPs do not depend on what is said."""
    n = int(round(duration_s * sample_rate))
    return (np.random.default_rng(seed).standard_normal(n) * 0.05).astype(np.float32)


def measure_cost(model, duration_s: float, chain, *, question: str = "What is said in this recording?",
                 answer_tokens: int = 16, count_flops: bool = True) -> dict:
    """Run one recording of ``duration_s`` through ``model`` and report what it cost, beside the matching
    analytic figures (``analytic``: prefix as prompt, no answer, dense attention)."""
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f"duration must be a positive number of seconds, got {duration_s!r}")
    audio = model.as_audio(noise(duration_s, model.config.sample_rate))
    query_aware = any(p.query_aware for p in chain)
    q = question if query_aware else None
    device = model.device
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    context = model.prefill(audio, chain, question=q)
    synchronize(device)
    prefill_s = time.perf_counter() - start
    kv = cache_bytes(context.cache)
    kv_tokens = int(context.cache.get_seq_length())
    answer = model.answer(context, question, max_new_tokens=max(1, answer_tokens))
    peak = peak_memory_bytes(device)
    flops = count_prefill_flops(model, audio, chain, question=q) if count_flops else None
    analytic, why = analytic_prefill(model, chain, audio.duration, context.prefix_tokens)
    new = len(answer.token_ids)
    return dict(
        duration_s=audio.duration,
        device=str(device),
        dtype=TORCH_DTYPES.get(model.dtype, str(model.dtype)),
        chain=context.press,
        audio_tokens_encoder=context.encoder_tokens,
        llm_audio_tokens=context.llm_audio_tokens,
        audio_tokens=context.cached_audio_tokens,
        tokens_per_second=context.cached_audio_tokens / audio.duration,
        prefix_tokens=context.prefix_tokens,
        kv_tokens=kv_tokens,
        kv_bytes=kv,
        peak_bytes=peak,
        peak_memory_kind=peak_memory_kind(device),
        prefill_seconds=prefill_s,
        decode_seconds=answer.decode_seconds,
        decode_tokens=new,
        decode_seconds_per_token=answer.decode_seconds / max(1, new + 1),  # + the question's own forward
        prefill_flops=None if flops is None else flops["total"],
        flops=flops,
        analytic=None if analytic is None else analytic.to_dict(),
        analytic_error=why,
    )


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
    # Rows answered by the options' likelihood (choice_logprobs) generate nothing: their time is not per token.
    generated = [r for r in rows if "choice_logprobs" not in r]
    decode_steps = sum(r["new_tokens"] + 1 for r in generated)
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
        decode_seconds_per_token=sum(r["decode_seconds"] for r in generated) / decode_steps if generated else None,
        choice_seconds_mean=mean("decode_seconds", [r for r in rows if "choice_logprobs" in r]),
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

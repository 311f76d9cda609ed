"""The press matrix: every registered token press crossed with every input shape.

Checks lengths (exactly ``output_length``), achieved ratio (within 5%), spans (monotonic, inside the audio),
determinism, gradients of trainable presses and independence from padding. SST (``sst``) has its own tests;
``identity`` is checked trivially.
"""

from __future__ import annotations

import functools
import inspect
import math

import pytest
import torch

from speechpress.presses import AudioTokens, PressContext, available_presses, build_press

D = 32
FPS = 25.0
RATIO = 4.0
SKIP = {"identity"} | {n for n, c in available_presses().items() if c.space == "kv"}
MATRIX = sorted(n for n in available_presses() if n not in SKIP)
SHAPES = {"short": 10.0, "window": 30.0, "many": 95.0, "single": 1 / FPS}


@functools.lru_cache(maxsize=1)
def tiny_llm():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=64, hidden_size=D, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256,
    )
    return Qwen2ForCausalLM(cfg).eval()


def make_row(seconds: float, seed: int = 0, dim: int = D, fps: float = FPS, offset: float = 0.0):
    """Frames at ``fps`` covering ``seconds`` of audio, spans like SpeechLM.encode makes them."""
    n = max(1, round(seconds * fps))
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, dim, generator=gen)
    starts = offset + torch.arange(n, dtype=torch.float64) / fps
    spans = torch.stack([starts, torch.clamp(starts + 1 / fps, max=offset + max(seconds, 1 / fps))], dim=-1)
    return emb, spans


def make_press(name: str, ratio: float | None = RATIO, tps: float | None = None, seed: int = 0, **extra):
    cls = available_presses()[name]
    kwargs = dict(extra)
    if cls.trainable:
        kwargs.setdefault("dim", D)
        kwargs.setdefault("num_heads", 2)
    if name == "hfq":
        kwargs.setdefault("stage_queries", 8)
    if "seed" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("seed", seed)  # random baselines draw from their own seed
    torch.manual_seed(seed)  # trainable presses draw their initial weights from the global generator
    return build_press(name, ratio=ratio, tokens_per_second=tps, **kwargs)


def context_for(batch: int, seed: int = 1) -> PressContext:
    gen = torch.Generator().manual_seed(seed)
    return PressContext(query_embeds=torch.randn(batch, 5, D, generator=gen), llm=tiny_llm())


def check_spans(out_spans: torch.Tensor, in_spans: torch.Tensor) -> None:
    assert out_spans.shape[-1] == 2
    assert torch.all(out_spans[:, 0] <= out_spans[:, 1])
    assert torch.all(out_spans[1:, 0] >= out_spans[:-1, 0]), "span starts must not go back in time"
    assert torch.all(out_spans[1:, 1] >= out_spans[:-1, 1]), "span ends must not go back in time"
    assert float(out_spans[0, 0]) >= float(in_spans[0, 0]) - 1e-9
    assert float(out_spans[-1, 1]) <= float(in_spans[-1, 1]) + 1e-9


def check_ratio(n_in: int, n_out: int, ratio: float | None, tps: float | None, seconds: float) -> None:
    ideal = n_in / ratio if tps is None else seconds * tps
    ideal = min(ideal, n_in)
    if ideal >= 20:
        assert abs(n_out - ideal) / ideal <= 0.05, (n_in, n_out, ideal)
    else:  # too few tokens for a percentage: the count itself is exact
        assert n_out == max(1, math.ceil(ideal - 1e-9))


def test_matrix_lists_the_issue_presses():
    assert {"downsample", "segment", "random", "crop", "qformer", "hfq", "speechprune", "avgpool"} <= set(MATRIX)
    for name, cls in available_presses().items():
        assert cls.description and "\n" not in cls.description, name
        assert cls.space in ("encoder", "llm", "kv"), name


def test_identity_is_untouched():
    emb, spans = make_row(10.0)
    tokens = AudioTokens.from_rows([(emb, spans)])
    out = build_press("identity")(tokens)
    assert torch.equal(out.embeddings, tokens.embeddings) and torch.equal(out.spans, tokens.spans)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("name", MATRIX)
def test_length_ratio_spans(name, shape):
    seconds = SHAPES[shape]
    emb, spans = make_row(seconds, seed=3)
    press = make_press(name)
    out = press(AudioTokens.from_rows([(emb, spans)]), context_for(1))
    n_in, n_out = emb.shape[0], int(out.lengths[0])
    assert n_out == press.output_length(n_in, float(spans[-1, 1] - spans[0, 0]))
    assert out.embeddings.shape == (1, n_out, D)
    assert torch.isfinite(out.embeddings).all()
    check_ratio(n_in, n_out, RATIO, None, seconds)
    check_spans(out.spans[0, :n_out], spans)


@pytest.mark.parametrize("name", MATRIX)
def test_ragged_batch_equals_rows_alone(name):
    rows = [make_row(10.0, seed=1), make_row(31.3, seed=2), make_row(1 / FPS, seed=3), make_row(4.2, seed=4)]
    press = make_press(name).eval()
    ctx = context_for(len(rows))
    batch = press(AudioTokens.from_rows(rows), ctx)
    assert batch.lengths.tolist() == [press.output_length(e.shape[0], float(s[-1, 1] - s[0, 0])) for e, s in rows]
    for b, row in enumerate(rows):
        alone_ctx = PressContext(query_embeds=ctx.query_embeds[b : b + 1], llm=ctx.llm)
        alone = press(AudioTokens.from_rows([row]), alone_ctx)
        n = int(alone.lengths[0])
        assert int(batch.lengths[b]) == n
        torch.testing.assert_close(batch.embeddings[b, :n], alone.embeddings[0, :n], rtol=0, atol=1e-6)
        assert torch.equal(batch.spans[b, :n], alone.spans[0, :n])
        assert torch.all(batch.embeddings[b, n:] == 0), "padding must stay zero"


@pytest.mark.parametrize("name", MATRIX)
def test_an_empty_row_stays_empty_beside_a_full_one(name):
    """Every press handles a row with no tokens the same way: it stays empty, and its neighbour is unaffected."""
    emb, spans = make_row(6.0, seed=8)
    empty = (emb[:0], spans[:0])
    press = make_press(name).eval()
    out = press(AudioTokens.from_rows([empty, (emb, spans)]), context_for(2))
    alone = press(AudioTokens.from_rows([(emb, spans)]), PressContext(query_embeds=context_for(2).query_embeds[1:], llm=tiny_llm()))
    assert out.lengths.tolist() == [0, int(alone.lengths[0])]
    torch.testing.assert_close(out.embeddings[1, : int(alone.lengths[0])], alone.embeddings[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", MATRIX)
def test_deterministic_at_fixed_seed(name):
    emb, spans = make_row(30.0, seed=5)
    tokens = AudioTokens.from_rows([(emb, spans)])
    first = make_press(name, seed=7)(tokens, context_for(1))
    second = make_press(name, seed=7)(tokens, context_for(1))
    assert torch.equal(first.embeddings, second.embeddings)
    assert torch.equal(first.spans, second.spans)


@pytest.mark.parametrize("name", [n for n in MATRIX if available_presses()[n].trainable])
def test_gradients_reach_every_parameter(name):
    emb, spans = make_row(30.0, seed=6)
    emb.requires_grad_(True)
    press = make_press(name).train()
    out = press(AudioTokens.from_rows([(emb, spans)]), context_for(1))
    weights = torch.randn(out.embeddings.shape, generator=torch.Generator().manual_seed(0))
    (out.embeddings * weights).sum().backward()
    params = dict(press.named_parameters())
    assert params, "a trainable press must have parameters"
    for pname, p in params.items():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name}.{pname} got a zero gradient"
    assert emb.grad is not None and emb.grad.abs().sum() > 0


SWEEP_SECONDS = [1.0, 7.3, 30.0, 61.0, 600.0, 3600.0]
SWEEP_TARGETS = [(2.0, None), (8.0, None), (64.0, None), (None, 0.5), (None, 1.67), (None, 5.0)]


@functools.lru_cache(maxsize=8)
def sweep_row(seconds: float):
    return make_row(seconds, seed=11)


@pytest.mark.parametrize("seconds", SWEEP_SECONDS)
@pytest.mark.parametrize("name", [n for n in MATRIX if not available_presses()[n].trainable])
def test_ratio_sweep_training_free(name, seconds):
    emb, spans = sweep_row(seconds)
    tokens = AudioTokens.from_rows([(emb, spans)])
    n_in = emb.shape[0]
    checked = 0
    for ratio, tps in SWEEP_TARGETS:
        press = make_press(name, ratio=ratio, tps=tps)
        if name == "speechprune" and 2 * press.output_length(n_in, seconds) > 6000:
            continue  # phase 2 is quadratic in its input; the long cases run at high ratios only
        with torch.no_grad():
            out = press(tokens, context_for(1))
        n_out = int(out.lengths[0])
        assert n_out == press.output_length(n_in, seconds)
        check_ratio(n_in, n_out, ratio, tps, seconds)
        check_spans(out.spans[0, :n_out], spans)
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("seconds", [1.0, 61.0, 600.0])
@pytest.mark.parametrize("name", [n for n in MATRIX if available_presses()[n].trainable])
def test_ratio_sweep_trainable(name, seconds):
    emb, spans = make_row(seconds, seed=12, dim=D)
    tokens = AudioTokens.from_rows([(emb, spans)])
    for ratio, tps in [(8.0, None), (None, 50 / 30)]:
        press = make_press(name, ratio=ratio, tps=tps)
        with torch.no_grad():
            out = press(tokens)
        n_out = int(out.lengths[0])
        assert n_out == press.output_length(emb.shape[0], seconds)
        check_ratio(emb.shape[0], n_out, ratio, tps, seconds)
        check_spans(out.spans[0, :n_out], spans)


def test_a_scorer_press_is_one_method():
    """A new pruning method only says how tokens score (here: key-norm); keeping, order, spans and empty rows
    come from the base."""
    from speechpress.presses.base import ScorerPress

    class NormPress(ScorerPress):
        name = "norm"
        space = "llm"

        def score(self, embeddings, spans, context, index):
            return embeddings.norm(dim=-1)

    emb, spans = make_row(10.0)
    tokens = AudioTokens.from_rows([(emb, spans), (emb[:0], spans[:0])])
    out = NormPress(ratio=RATIO)(tokens)
    n_out = math.ceil(emb.shape[0] / RATIO)
    expected = torch.sort(torch.topk(emb.norm(dim=-1), n_out).indices).values
    assert out.lengths.tolist() == [n_out, 0]
    assert torch.equal(out.embeddings[0, :n_out], emb[expected])
    check_spans(out.spans[0, :n_out], spans)


def test_stretch_cuts_by_span_middle_and_consecutive_stretches_partition_the_tokens():
    """AudioTokens.stretch (how an utterance is cut from its recording's encoding): 40 ms tokens, so the token
    middles are 0.02, 0.06, 0.10, ...; [0.05, 0.15) holds tokens 1-3, with spans relative to 0.05."""
    n = 10
    starts = torch.arange(n, dtype=torch.float64) * 0.04
    spans = torch.stack([starts, starts + 0.04], dim=1)
    embeddings = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    tokens = AudioTokens.from_rows([(embeddings, spans)])
    frames, rel = tokens.stretch(0.05, 0.10)
    assert torch.equal(frames, embeddings[1:4])
    assert torch.allclose(rel, spans[1:4] - 0.05)
    cuts = [tokens.stretch(a, b - a)[0] for a, b in ((0.0, 0.13), (0.13, 0.21), (0.21, 0.4))]
    assert torch.equal(torch.cat(cuts), embeddings)  # no token shared, none missed
    assert tokens.stretch(0.41, 0.5)[0].shape[0] == 0

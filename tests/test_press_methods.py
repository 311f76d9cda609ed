"""Method-level checks of the token presses: exact values, constructed cases with known answers, costs."""

from __future__ import annotations

import torch

import pytest

from speechpress.errors import PressError
from speechpress.presses import AudioTokens, PressContext, build_press, check_chain
from speechpress.presses.cost import press_cost
from speechpress.presses.segment import choose_boundaries
from speechpress.presses.speechprune import SpeechPrunePress, first_layer_attention

from test_presses import D, FPS, make_press, make_row, tiny_llm


def run(press, emb, spans, context=None):
    out = press(AudioTokens.from_rows([(emb, spans)]), context)
    n = int(out.lengths[0])
    return out.embeddings[0, :n], out.spans[0, :n]


# ---------------------------------------------------------------------------------------- pooling / sampling
def test_avgpool_and_downsample_exact_values():
    emb = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 2)
    _, spans = make_row(10 / FPS, dim=2)
    pooled, pooled_spans = run(build_press("avgpool", ratio=3), emb, spans)
    assert pooled[:, 0].tolist() == [1.0, 4.0, 7.0, 9.0]
    kept, kept_spans = run(build_press("downsample", ratio=3), emb, spans)
    assert kept[:, 0].tolist() == [0.0, 3.0, 6.0, 9.0]
    expected = torch.tensor([[0, 3], [3, 6], [6, 9], [9, 10]], dtype=torch.float64) / FPS
    torch.testing.assert_close(kept_spans, expected)
    torch.testing.assert_close(pooled_spans, expected)
    # Non-integer k: equal groups [0,2) [2,5) [5,7) [7,10), first frame of each.
    kept, kept_spans = run(build_press("downsample", ratio=2.5), emb, spans)
    assert kept[:, 0].tolist() == [0.0, 2.0, 5.0, 7.0]
    torch.testing.assert_close(kept_spans, torch.tensor([[0, 2], [2, 5], [5, 7], [7, 10]], dtype=torch.float64) / FPS)


# ---------------------------------------------------------------------------------------------- segment
def test_boundaries_prefer_peaks_then_highest_remaining():
    d = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.5, 0.3], dtype=torch.float64)
    assert choose_boundaries(d, 2).tolist() == [1, 4]  # 0.8 is higher than 0.5 but not a peak
    assert choose_boundaries(d, 3).tolist() == [1, 2, 4]  # too few peaks: fill with the highest remaining
    assert choose_boundaries(torch.tensor([0.9, 0.1], dtype=torch.float64), 1).tolist() == [0]  # edge peak
    assert choose_boundaries(torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64), 1).tolist() == [0]  # tie: earliest


def test_segment_finds_known_change_points():
    gen = torch.Generator().manual_seed(0)
    lengths = [7, 12, 5, 20, 6]
    centres = torch.randn(len(lengths), 16, generator=gen)
    emb = torch.cat([c.repeat(n, 1) for c, n in zip(centres, lengths)]) + 0.01 * torch.randn(50, 16, generator=gen)
    _, spans = make_row(50 / FPS, dim=16)
    out, out_spans = run(build_press("segment", ratio=10), emb, spans)
    bounds = torch.tensor([0, 7, 19, 24, 44, 50])
    torch.testing.assert_close(out_spans, torch.stack([spans[bounds[:-1], 0], spans[bounds[1:] - 1, 1]], dim=-1))
    expected = torch.stack([emb[a:b].mean(0) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())])
    torch.testing.assert_close(out, expected)


def test_segment_variable_rate_keeps_every_peak_and_only_peaks():
    """The paper's mode: no ratio, one token per stretch between change points, however many there are."""
    gen = torch.Generator().manual_seed(0)
    lengths = [7, 12, 5, 20, 6]
    centres = torch.randn(len(lengths), 16, generator=gen)
    emb = torch.cat([c.repeat(n, 1) for c, n in zip(centres, lengths)])  # flat inside a segment: no peak there
    _, spans = make_row(50 / FPS, dim=16)
    press = build_press("segment", variable_rate=True)
    out, out_spans = run(press, emb, spans)
    bounds = torch.tensor([0, 7, 19, 24, 44, 50])
    assert out.shape[0] == 5 and press.variable_length and out.shape[0] <= press.output_length(50)
    torch.testing.assert_close(out, centres)
    doubled = torch.cat([emb, emb + 0.3 * torch.randn(1, 16, generator=gen)])  # twice the segments
    assert run(press, doubled, make_row(100 / FPS, dim=16)[1])[0].shape[0] == 10
    with pytest.raises(PressError, match="no ratio"):
        build_press("segment", ratio=4, variable_rate=True)


def test_segment_distance_is_the_cosine_so_loudness_alone_is_no_boundary():
    """A frame that only grows louder (same direction, 4x the norm) is no change point; a Euclidean distance would
    put one there."""
    gen = torch.Generator().manual_seed(1)
    u, v = torch.randn(2, 16, generator=gen)
    emb = torch.stack([u, u, 4 * u, 4 * u, v, v])
    from speechpress.presses.segment import dissimilarity, peaks

    assert peaks(dissimilarity(emb)).tolist() == [3]
    scales = torch.rand(6, 1, generator=gen) + 0.5
    torch.testing.assert_close(dissimilarity(emb * scales), dissimilarity(emb))


# ------------------------------------------------------------------------------------------ random / crop
def test_random_drop_keeps_rows_in_order_and_follows_the_seed():
    emb, spans = make_row(10.0, seed=2)
    out, out_spans = run(make_press("random", ratio=4, seed=0), emb, spans)
    idx = torch.round(out_spans[:, 0] * FPS).long()
    assert torch.all(idx[1:] > idx[:-1]) and len(idx) == 63
    assert torch.equal(out, emb[idx])
    other, _ = run(make_press("random", ratio=4, seed=1), emb, spans)
    assert not torch.equal(out, other)
    # context.generator takes over from the seed: a generator at seed 1 replays seed=1.
    via_gen, _ = run(make_press("random", ratio=4, seed=0), emb, spans, PressContext(generator=torch.Generator().manual_seed(1)))
    assert torch.equal(via_gen, other)


def test_crop_is_one_contiguous_span():
    emb, spans = make_row(10.0, seed=2)
    starts = set()
    for seed in range(5):
        out, out_spans = run(make_press("crop", ratio=4, seed=seed), emb, spans)
        first = int(torch.round(out_spans[0, 0] * FPS))
        assert torch.equal(out, emb[first : first + 63])
        starts.add(first)
    assert len(starts) > 1, "different seeds should crop different places"


# --------------------------------------------------------------------------------------------- qformer
def test_qformer_windows_are_independent_and_salmonn_sized():
    emb, spans = make_row(40 / FPS, seed=4)
    press = make_press("qformer", ratio=4).eval()
    out, out_spans = run(press, emb, spans)
    assert out.shape[0] == 10
    for i in range(10):  # SALMONN layout: window i is frames [4i, 4i+4), one query each
        alone, alone_spans = run(press, emb[4 * i : 4 * i + 4], spans[4 * i : 4 * i + 4])
        torch.testing.assert_close(out[i : i + 1], alone, rtol=0, atol=1e-5)
        torch.testing.assert_close(out_spans[i : i + 1], alone_spans)


def test_qformer_short_last_window_masks_unused_queries():
    emb, spans = make_row(10 / FPS, seed=4)
    press = make_press("qformer", ratio=4, num_queries=2).eval()
    out, out_spans = run(press, emb, spans)  # windows of 8 frames: [0, 8) -> 2 tokens, [8, 10) -> 1 token
    assert out.shape[0] == 3
    torch.testing.assert_close(out_spans[:, 0], torch.tensor([0, 0, 8], dtype=torch.float64) / FPS)
    alone, _ = run(press, emb[8:], spans[8:])
    torch.testing.assert_close(out[2:], alone, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------- hfq
def test_qformer_queries_pass_a_layer_norm():
    """SALMONN's queries go through BERT's embedding LayerNorm: scaling the learned queries changes nothing; without
    the norm it does."""
    emb, spans = make_row(4.0, seed=3)
    for query_norm in (True, False):
        press = make_press("qformer", ratio=5, query_norm=query_norm).eval()
        before, _ = run(press, emb, spans)
        with torch.no_grad():
            press.queries.mul_(3.0)
        after, _ = run(press, emb, spans)
        assert torch.allclose(before, after, atol=1e-5) is query_norm


def test_qformer_overlap_reads_the_neighbours_frames_and_keeps_the_count():
    emb, spans = make_row(4.0, seed=3)  # 100 frames, ratio 5: 20 windows of 5 frames, one token each
    changed = emb.clone()
    changed[10] = torch.randn(D, generator=torch.Generator().manual_seed(9))  # the first frame of window 2
    for overlap, touched in [(0, {2}), (2, {1, 2})]:  # window 1 reads frames 3-11, window 3 starts at 13
        press = make_press("qformer", ratio=5, overlap=overlap).eval()
        out, out_spans = run(press, emb, spans)
        other, _ = run(press, changed, spans)
        assert out.shape[0] == 20 and press.output_length(100, 4.0) == 20
        moved = {i for i in range(20) if not torch.allclose(out[i], other[i], atol=1e-6)}
        assert moved == touched, (overlap, moved)
    assert float(out_spans[1, 0]) == float(spans[3, 0]) and float(out_spans[1, 1]) == float(spans[11, 1])


def test_hfq_default_rate_and_window_counts():
    press = make_press("hfq", ratio=None)
    assert press.num_queries == 50
    for seconds, expected in [(1.0, 2), (10.0, 17), (30.0, 50), (95.0, 159)]:
        emb, spans = make_row(seconds, seed=1)
        out, out_spans = run(press, emb, spans)
        assert out.shape[0] == expected, seconds
    # 95 s: windows [0,30) [30,60) [60,90) [90,95) -> 50 tokens each, then 9, each spanning its window.
    assert torch.unique_consecutive(out_spans[:, 0], return_counts=True)[1].tolist() == [50, 50, 50, 9]
    counts = make_press("hfq", ratio=8.0).window_counts(
        torch.tensor([750, 750, 750, 125]), torch.tensor([30.0, 30.0, 30.0, 5.0], dtype=torch.float64), 297
    )
    assert counts.tolist() == [94, 94, 94, 15]  # running ceil of 93.75, 187.5, 281.25, 296.875


def test_hfq_windows_are_independent():
    emb, spans = make_row(95.0, seed=8)
    press = make_press("hfq", ratio=None).eval()
    out, _ = run(press, emb, spans)
    pieces = [run(press, emb[a:b], spans[a:b])[0] for a, b in [(0, 750), (750, 1500), (1500, 2250), (2250, 2375)]]
    torch.testing.assert_close(out, torch.cat(pieces), rtol=0, atol=1e-5)


def test_hfq_windows_are_counted_from_the_row_start():
    """A row cut out of a recording at 20 s gets two full windows, not 10 s + 30 s + 20 s."""
    emb, spans = make_row(60.0, seed=3, offset=20.0)
    press = make_press("hfq", ratio=None).eval()
    out, out_spans = run(press, emb, spans)
    assert torch.unique_consecutive(out_spans[:, 0], return_counts=True)[1].tolist() == [50, 50]
    torch.testing.assert_close(out, run(press, emb, spans - 20.0)[0], rtol=0, atol=1e-6)


def test_hfq_pad_last_window_is_fastslm_exact():
    """FastSLM pads every window to 30 s and emits 50 tokens from each, the last included."""
    press = make_press("hfq", ratio=None, pad_last_window=True).eval()
    emb, spans = make_row(95.0, seed=1)
    out, out_spans = run(press, emb, spans)
    assert out.shape[0] == press.output_length(emb.shape[0], 95.0) == 200
    assert torch.unique_consecutive(out_spans[:, 0], return_counts=True)[1].tolist() == [50, 50, 50, 50]
    padded = torch.cat([emb[2250:], emb.new_zeros(750 - 125, D)])[None]  # the 5 s tail, zero-padded to 30 s
    torch.testing.assert_close(out[150:], press.press_windows(padded, 50)[0], rtol=0, atol=1e-6)
    one, one_spans = make_row(1.0)
    assert run(press, one, one_spans)[0].shape[0] == 50  # a 1 s clip costs a whole window


def test_hfq_every_scale_and_the_key_positions_matter():
    press = make_press("hfq", ratio=None).eval()
    x = torch.randn(1, 750, D, generator=torch.Generator().manual_seed(4))
    base = press.press_windows(x, 50)
    for compressor in press.stage_compressors:  # one compressor per scale (X1, X2, X3): each one is read
        saved = compressor.out_proj.weight.detach().clone()
        with torch.no_grad():
            compressor.out_proj.weight.mul_(2.0)
        changed = press.press_windows(x, 50)
        with torch.no_grad():
            compressor.out_proj.weight.copy_(saved)
        assert not torch.allclose(changed, base, atol=1e-4)
    # Keys carry sinusoidal positions: the same frames in another order give another summary.
    first = press.stage_compressors[0]
    shuffled = x[:, torch.randperm(750, generator=torch.Generator().manual_seed(5))]
    assert not torch.allclose(first(x), first(shuffled), atol=1e-4)


def test_hfq_parameter_count_matches_fastslm():
    with torch.device("meta"):
        press = build_press("hfq", dim=1280)
    assert press.num_heads == 20 and press.num_queries == 50
    d = 1280
    compressors = 3 * (80 * d + 4 * d + d * d + d) + (50 * d + 4 * d + d * d + d)
    downsamplers = 2 * (2 * (3 * d * d + d) + 2 * d)
    blocks = 2 * (2 * (4 * d * d + 3 * d) + 4 * d)
    total = sum(p.numel() for p in press.parameters())
    assert total == compressors + downsamplers + blocks
    assert abs(total - 52.8e6) / 52.8e6 < 0.01  # research notes: 56.1 M including the 3.3 M projector


def test_cost_reports_parameters_and_flops():
    press = make_press("hfq", ratio=None)
    one, two = press_cost(press, 750), press_cost(press, 1500)
    assert one.parameters == sum(p.numel() for p in press.parameters()) == one.trainable_parameters
    assert (one.tokens_out, two.tokens_out) == (50, 100)
    assert one.flops > 0 and two.flops == 2 * one.flops  # windows are pressed independently
    q = press_cost(make_press("qformer", ratio=4), 750)
    assert q.tokens_out == 188 and q.flops > 0
    with pytest.raises(PressError):
        press_cost(build_press("downsample", ratio=2), 100)  # no width of its own


# ----------------------------------------------------------------------------------------- speechprune
def known_case(n_matching: int = 5):
    """10 s of tokens orthogonal to a 4-token question, except ``n_matching`` that equal the question's mean."""
    gen = torch.Generator().manual_seed(3)
    query = torch.linalg.qr(torch.randn(D, 4, generator=gen)).Q.T  # orthonormal question tokens
    emb, spans = make_row(10.0, seed=9)
    emb = emb - (emb @ query.T) @ query  # background: cosine 0 with every question token
    match = query.sum(0)
    positions = torch.tensor([12, 60, 61, 140, 230][:n_matching])
    emb[positions] = match * 3.0
    return emb, spans, query, positions, match


def kept_positions(out_spans):
    return set(torch.round(out_spans[:, 0] * FPS).long().tolist())


def test_speechprune_phase1_keeps_the_tokens_matching_the_question():
    emb, spans, query, positions, _ = known_case()
    press = SpeechPrunePress(ratio=20, phase2=False)
    out, out_spans = run(press, emb, spans, PressContext(query_embeds=query[None]))
    assert out.shape[0] == 13
    assert set(positions.tolist()) <= kept_positions(out_spans)


def test_speechprune_both_phases_keep_them_when_layer_one_attends_to_them():
    emb, spans, query, positions, match = known_case()
    llm = tiny_llm()
    attn, *_ = first_layer_attention(llm)
    saved = attn.q_proj.weight.detach().clone(), attn.k_proj.weight.detach().clone()
    try:
        with torch.no_grad():  # every head's query and key read the question direction
            attn.q_proj.weight.copy_(torch.sign(match).repeat(attn.q_proj.weight.shape[0], 1))
            attn.k_proj.weight.copy_(torch.sign(match).repeat(attn.k_proj.weight.shape[0], 1))
        out, out_spans = run(SpeechPrunePress(ratio=20), emb, spans, PressContext(query_embeds=query[None], llm=llm))
    finally:
        with torch.no_grad():
            attn.q_proj.weight.copy_(saved[0])
            attn.k_proj.weight.copy_(saved[1])
    assert out.shape[0] == 13
    assert set(positions.tolist()) <= kept_positions(out_spans)


class FixedScores(SpeechPrunePress):
    def token_scores(self, embeddings, query):
        return torch.tensor([0.9, 0.1, 0.5, 0.4, 0.0, 0.2])


def test_speechprune_frame_budgets_and_remainder_by_hand():
    # 3 frames of 2 tokens; frame scores 1.0, 0.9, 0.2 -> softmax shares .425 .384 .191 -> budget 4 floors to
    # 1, 1, 0 (tokens 0 and 2); the 2 left go to the best tokens not yet kept: 3 (0.4) and 5 (0.2).
    emb, spans = make_row(3.0, dim=4, fps=2.0)
    keep = FixedScores(ratio=1).similarity_select(emb, spans, torch.ones(1, 4), 4)
    assert keep.tolist() == [0, 2, 3, 5]


class DistinctScores(SpeechPrunePress):
    def token_scores(self, embeddings, query):
        return torch.tensor([0.90, 0.89, 0.88, 0.87, 0.00, 0.01, 0.02, 0.03, 0.86, 0.85, 0.84, 0.83])


def test_speechprune_frame_budgets_follow_the_softmax_not_a_uniform_share():
    # 3 frames of 4 tokens, frame sums 3.54 / 0.06 / 3.38 -> softmax shares .531 / .016 / .453 -> budget 4 floors to
    # 2, 0, 1 (tokens 0, 1, 8) and the one left goes to the best token not kept (2): [0, 1, 2, 8]. Uniform shares
    # (1 each) would keep token 7 of the silent frame: [0, 1, 7, 8].
    emb, spans = make_row(3.0, dim=4, fps=4.0)
    keep = DistinctScores(ratio=1).similarity_select(emb, spans, torch.ones(1, 4), 4)
    assert keep.tolist() == [0, 1, 2, 8]


def test_speechprune_phase1_budget_is_absolute_and_the_pruning_rate_relative_to_it(monkeypatch):
    """The paper: phase 1 keeps B1 = 750 tokens (30 s at 25/s), PR 0.2 / 0.8 then keep 600 / 150 of them."""
    budgets = []
    real = SpeechPrunePress.similarity_select
    monkeypatch.setattr(SpeechPrunePress, "similarity_select",
                        lambda self, e, s, q, budget: budgets.append(budget) or real(self, e, s, q, budget))
    emb, spans = make_row(90.0, seed=4)  # 2,250 tokens
    context = PressContext(query_embeds=torch.randn(1, 3, D, generator=torch.Generator().manual_seed(5)), llm=tiny_llm())
    for press, n_out, b1 in [
        (SpeechPrunePress(pruning_rate=0.2), 600, 750),
        (SpeechPrunePress(pruning_rate=0.8), 150, 750),
        (SpeechPrunePress(ratio=4), 563, 750),  # the speechpress ratio: ceil(2250 / 4) out, still B1 = 750 first
        (SpeechPrunePress(ratio=2), 1125, 1125),  # more out than B1: phase 1 keeps what phase 2 must output
        (SpeechPrunePress(ratio=4, phase1_tokens=None, phase1_factor=2.0), 563, 1126),  # the relative variant
        (SpeechPrunePress(pruning_rate=0.2, phase1_tokens=300), 240, 300),
    ]:
        out, _ = run(press, emb, spans, context)
        assert (out.shape[0], budgets[-1]) == (n_out, b1), press
        assert press.output_length(2250, 90.0) == n_out
    from speechpress.ratio import ratio_from_pruning_rate

    assert ratio_from_pruning_rate(0.2, 2250) == 2250 / 600  # the ratio language agrees with the press's count
    assert ratio_from_pruning_rate(0.8, 2250, 300) == 2250 / 60
    short, _ = make_row(10.0)  # 250 tokens: B1 is capped by the input, PR 0.2 keeps 200
    assert SpeechPrunePress(pruning_rate=0.2).output_length(250, 10.0) == 200
    with pytest.raises(PressError, match="not both"):
        SpeechPrunePress(ratio=4, pruning_rate=0.2)
    with pytest.raises(PressError, match="pruning_rate"):
        SpeechPrunePress(pruning_rate=1.0)
    with pytest.raises(PressError, match="phase1_tokens"):
        SpeechPrunePress(pruning_rate=0.2, phase1_tokens=None)


def test_speechprune_each_phase_changes_the_choice():
    """Phase 1 alone, phase 2 alone and both keep three different sets (one flag ignored would make two equal)."""
    emb, spans = make_row(40.0, seed=6)  # 1,000 tokens -> 125 kept, B1 = 750
    context = PressContext(query_embeds=torch.randn(1, 3, D, generator=torch.Generator().manual_seed(7)), llm=tiny_llm())
    kept = {}
    for label, kwargs in [("p1", dict(phase2=False)), ("p2", dict(phase1=False)), ("both", {})]:
        _, out_spans = run(SpeechPrunePress(ratio=8, **kwargs), emb, spans, context)
        kept[label] = kept_positions(out_spans)
        assert len(kept[label]) == 125
    assert kept["p1"] != kept["p2"] and kept["both"] != kept["p1"] and kept["both"] != kept["p2"]


def test_truncate_keeps_the_first_30_seconds_or_a_head_at_a_ratio():
    emb, spans = make_row(90.0, seed=2)  # 2,250 tokens
    out, out_spans = run(build_press("truncate"), emb, spans)
    assert out.shape[0] == 750 and torch.equal(out, emb[:750]) and float(out_spans[-1, 1]) <= 30.0 + 1e-9
    out, _ = run(build_press("truncate", seconds=10), emb, spans)
    assert out.shape[0] == 250
    out, _ = run(build_press("truncate", ratio=9), emb, spans)
    assert torch.equal(out, emb[:250])
    short, short_spans = make_row(20.0)  # shorter than 30 s: nothing to cut
    assert run(build_press("truncate"), short, short_spans)[0].shape[0] == 500
    with pytest.raises(PressError, match="seconds"):
        build_press("truncate", seconds=0)


def test_speechprune_gqa_scores_match_a_per_head_reference():
    llm = tiny_llm()
    attn, heads, kv_heads, head_dim = first_layer_attention(llm)
    assert (heads, kv_heads) == (4, 2)
    x = torch.randn(30, D, generator=torch.Generator().manual_seed(2))
    got = SpeechPrunePress(ratio=2).attention_received(x, attn, heads, kv_heads, head_dim)
    xb = torch.sign(x)
    wq, wk = torch.sign(attn.q_proj.weight.detach()), torch.sign(attn.k_proj.weight.detach())
    total = torch.zeros(30, dtype=torch.float64)
    for h in range(heads):
        g = h // (heads // kv_heads)
        q = xb @ wq[h * head_dim : (h + 1) * head_dim].T
        k = xb @ wk[g * head_dim : (g + 1) * head_dim].T
        total += torch.softmax(q @ k.T / head_dim**0.5, dim=-1).mean(0).double()
    torch.testing.assert_close(got, total / heads, rtol=1e-5, atol=1e-7)


def test_speechprune_refuses_missing_inputs():
    emb, spans = make_row(5.0)
    tokens = AudioTokens.from_rows([(emb, spans)])
    with pytest.raises(PressError, match="question"):
        SpeechPrunePress(ratio=4)(tokens, PressContext(llm=tiny_llm()))
    with pytest.raises(PressError, match="first decoder layer"):
        SpeechPrunePress(ratio=4)(tokens, PressContext(query_embeds=torch.randn(1, 3, D)))
    with pytest.raises(PressError, match="width"):
        SpeechPrunePress(ratio=4)(tokens, PressContext(query_embeds=torch.randn(1, 3, D + 2), llm=tiny_llm()))
    with pytest.raises(PressError):
        SpeechPrunePress(ratio=4, phase1=False, phase2=False)


def test_avgpool_then_speechprune_compose_to_x8():
    emb, spans = make_row(40.0, seed=10)
    chain = [build_press("avgpool", ratio=2), SpeechPrunePress(ratio=4)]
    check_chain(chain)
    tokens = AudioTokens.from_rows([(emb, spans)])
    context = PressContext(query_embeds=torch.randn(1, 3, D), llm=tiny_llm())
    for press in chain:
        tokens = press(tokens, context)
    assert emb.shape[0] == 1000 and int(tokens.lengths[0]) == 125
    n = int(tokens.lengths[0])
    assert torch.all(tokens.spans[0, 1:n, 0] > tokens.spans[0, : n - 1, 0])
    assert float(tokens.spans[0, n - 1, 1]) <= 40.0


def test_hfq_fastslm_exact_on_a_model_that_keeps_whisper_50hz_frames():
    """FastSLM's HFQ-Former reads Whisper's 50 Hz frames: a model composed with encoder_pool 1 hands them to the
    presses, the press sizes its windows from the model (1,500 frames per 30 s) and, padded, emits 50 per window."""
    import dataclasses

    from speechpress.model.config import TINY
    from speechpress.model.speechlm import SpeechLM

    from helpers import speech

    model = SpeechLM.from_config(dataclasses.replace(TINY, encoder_pool=1), seed=0)
    assert model.config.tokens_per_second == 50
    chain = model.press_chain("hfq", options={"pad_last_window": True})
    press = chain[0]
    assert press.window_frames == 1500 and press.num_queries == 50
    context = model.prefill(speech(45.0), chain)
    assert context.encoder_tokens == 2250 and context.llm_audio_tokens == 100  # two windows, the second padded


def test_speechprune_scores_in_chunks_equal_the_whole_matrix(monkeypatch):
    """Phase 1 normalizes the audio tokens a chunk at a time (no normalized copy of hours of tokens); the scores
    are the mean cosine similarity computed on the whole matrix."""
    import torch.nn.functional as F

    import speechpress.presses.speechprune as speechprune

    torch.manual_seed(0)
    audio, query = torch.randn(1000, 32) * 3, torch.randn(7, 32)
    whole = (F.normalize(audio, dim=-1) @ F.normalize(query, dim=-1).T).mean(dim=1)
    monkeypatch.setattr(speechprune, "SCORE_CHUNK_TOKENS", 96)  # 1000 = 10 x 96 + 40
    assert torch.allclose(SpeechPrunePress(4).token_scores(audio, query), whole, atol=1e-6)

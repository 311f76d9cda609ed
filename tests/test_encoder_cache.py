"""The encoder cache: one encode per recording across a sweep, identical rows with and without it, invalidation
when anything that decides encoder outputs changes, the size bound, damaged entries and concurrent writers."""

import multiprocessing as mp
import time

import pytest
import torch

from speechpress.cli import main
from speechpress.encoder_cache import EncodedAudio, FrameCache, encoder_fingerprint
from speechpress.model.config import named_or_file_config
from speechpress.model.speechlm import SpeechLM

from eval_helpers import rows, stable

GEN = ["--max-new-tokens", "4", "--no-progress", "--count-flops", "none"]


def _sweep(model_dir, corpus, out, *extra):
    return main(["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--press", "identity", "avgpool",
                 "speechprune", "--ratio", "2", "--out", str(out), *GEN, *extra])


def test_a_sweep_encodes_each_audio_stretch_once_and_gives_the_rows_of_an_uncached_sweep(tmp_path, corpus, model_dir, capsys):
    assert _sweep(model_dir, corpus, tmp_path / "cached") == 0
    out = capsys.readouterr().out
    # 4 audio stretches (2 whole files, 2 segments), 3 runs: 4 encodes, the other runs read them.
    assert "4 encoded, 8 read" in out, out
    assert _sweep(model_dir, corpus, tmp_path / "plain", "--no-encoder-cache") == 0
    for run in ("identity", "avgpool-x2", "speechprune-x2"):
        cached = rows(next((tmp_path / "cached").glob(f"*/tiny/{run}")) / "predictions.jsonl")
        plain = rows(next((tmp_path / "plain").glob(f"*/tiny/{run}")) / "predictions.jsonl")
        assert [stable(r) for r in cached] == [stable(r) for r in plain]
        assert {r["encoder_cache"] for r in plain} == {"off"}
        assert {r["encoder_cache"] for r in cached} == ({"miss"} if run == "identity" else {"hit"})
        # A hit reports the encoding's measured time, so every press's prefill_seconds counts it.
        assert all(0 < r["encode_seconds"] <= r["prefill_seconds"] for r in cached)
    first = {r["audio_key"]: r["encode_seconds"] for r in rows(next((tmp_path / "cached").glob("*/tiny/identity")) / "predictions.jsonl")}
    later = {r["audio_key"]: r["encode_seconds"] for r in rows(next((tmp_path / "cached").glob("*/tiny/avgpool-x2")) / "predictions.jsonl")}
    assert first == later


def test_a_rerun_with_a_new_press_reads_the_cache_of_the_earlier_sweep(tmp_path, corpus, model_dir, capsys):
    assert main(["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--out", str(tmp_path), *GEN]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--press", "random", "--ratio", "2",
                 "--out", str(tmp_path), *GEN]) == 0
    assert "0 encoded, 4 read" in capsys.readouterr().out


def test_the_fingerprint_changes_with_weights_dtype_and_pooling_and_only_then():
    config = named_or_file_config("tiny")
    base = encoder_fingerprint(SpeechLM.from_config(config, seed=0))
    assert encoder_fingerprint(SpeechLM.from_config(config, seed=0)) == base
    assert encoder_fingerprint(SpeechLM.from_config(config, seed=1)) != base
    half = SpeechLM.from_config(config, seed=0)
    half.encoder.to(torch.float16)
    assert encoder_fingerprint(half) != base
    for change in (dict(encoder_pool_mode="stack"), dict(encoder_pool=config.encoder_pool * 2),
                   dict(encoder_pool_tail="drop" if config.encoder_pool_tail == "keep" else "keep")):
        other = config.__class__(**{**config.__dict__, **change})
        assert encoder_fingerprint(SpeechLM.from_config(other, seed=0)) != base, change
    # Projector and LLM weights decide nothing here: a model with another projector shares the cache.
    model = SpeechLM.from_config(config, seed=0)
    with torch.no_grad():
        next(model.projector.parameters()).add_(1.0)
    assert encoder_fingerprint(model) == base


def _entry(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((n, 16), float(n)), torch.zeros(n, 2, dtype=torch.float64)


def test_the_folder_bound_evicts_the_least_recently_used_entry(tmp_path):
    import os

    cache = FrameCache(tmp_path, "fp", max_memory_items=0)
    for i, key in enumerate("abc"):
        cache.put(key, *_entry(100), duration=1.0)
        os.utime(cache._path(key), (time.time() - 100 + i, time.time() - 100 + i))
    size = cache._path("a").stat().st_size
    assert cache.get("a") is not None  # a read makes "a" the most recently used
    cache.max_bytes = 3 * size
    cache.put("d", *_entry(100))
    assert not cache._path("b").exists()  # the oldest unread entry went; "a" stayed
    assert all(cache._path(k).exists() for k in "acd")
    assert sum(p.stat().st_size for p in cache.dir.iterdir()) <= 3 * size


def test_a_damaged_entry_is_encoded_again(tmp_path):
    model = SpeechLM.from_config(named_or_file_config("tiny"), seed=0).eval()
    from helpers import speech

    audio = speech(3.0)
    encoded = EncodedAudio(model, tmp_path)
    tokens, _, hit = encoded.encode(audio, "k")
    assert not hit and encoded.encodes == 1
    path = encoded.cache._path("k")
    path.write_bytes(path.read_bytes()[:50])  # a truncated file
    fresh = EncodedAudio(model, tmp_path)
    again, _, hit = fresh.encode(audio, "k")
    assert not hit and fresh.encodes == 1 and torch.equal(again.embeddings, tokens.embeddings)
    third = EncodedAudio(model, tmp_path)
    read, seconds, hit = third.encode(audio, "k")
    assert hit and third.encodes == 0 and torch.equal(read.embeddings, tokens.embeddings)
    assert read.duration == tokens.duration and torch.equal(read.spans, tokens.spans) and seconds > 0


def _writer(directory, key, seconds):
    cache = FrameCache(directory, "fp", max_memory_items=0)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        value, i = float(i % 2 + 1), i + 1
        cache.put(key, torch.full((2000, 64), value), torch.zeros(2000, 2, dtype=torch.float64), duration=value)


def test_a_read_beside_another_process_rewriting_the_entry_sees_one_whole_write(tmp_path):
    """Shards of one sweep write the same key: every read pairs the frames with the scalars of the same write.
    (safetensors' safe_open reads the header and the tensors through two opens of the path; beside a writer
    it mixed two writes about 35 times in 14,000 reads of 4 s, so this reads while another process rewrites.)"""
    FrameCache(tmp_path, "fp").put("shared", torch.ones(2000, 64), torch.zeros(2000, 2, dtype=torch.float64),
                                   duration=1.0)
    proc = mp.get_context("spawn").Process(target=_writer, args=(str(tmp_path), "shared", 4.0))
    proc.start()
    reads, mixed = 0, []
    while proc.is_alive():
        got = FrameCache(tmp_path, "fp", max_memory_items=0).get_entry("shared")
        reads += 1
        if got is None or got[0].shape != (2000, 64) or got[2]["duration"] != float(got[0][0, 0]):
            mixed.append(got if got is None else (float(got[0][0, 0]), got[2]))
    proc.join(timeout=60)
    assert proc.exitcode == 0 and reads > 100 and mixed == []
    assert [p.name for p in (tmp_path / "fp").iterdir()] == [FrameCache(tmp_path, "fp")._path("shared").name]


def test_the_cache_flags_are_checked(tmp_path, corpus, model_dir, capsys):
    assert main(["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--out", str(tmp_path),
                 "--encoder-cache-gb", "0", *GEN]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --encoder-cache-gb must be > 0") and "Traceback" not in err
    assert not any(tmp_path.iterdir())

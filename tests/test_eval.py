"""The eval sweep: folder layout, cost columns, exact metrics, determinism, resume, crash recovery, compress once /
ask many, sharding (in-process merge-on-complete and a real 2-process torchrun) and bad input."""

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from speechpress.cli import main
from speechpress.data.loaders import load_manifest
from speechpress.evaluate.normalize import normalize_english
from speechpress.evaluate.benchmark import resolve_benchmark
from speechpress.evaluate.distributed import Dist
from speechpress.evaluate.runner import Runner
from speechpress.evaluate.sweep import RunSpec, sweep
from speechpress.model.speechlm import SpeechLM

from eval_helpers import rows, stable
from helpers import speech

GEN = ["--max-new-tokens", "4"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, corpus, model_dir):
    """identity and avgpool x4 over the whole corpus, FLOPs counted on each run's first prefill."""
    out = tmp_path_factory.mktemp("runs")
    code = main(["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--press", "identity", "avgpool",
                 "--ratio", "4", "--out", str(out), "--no-progress", *GEN])
    assert code == 0
    return next(out.glob("*/tiny"))


def _err_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------------- layout, cost
def test_sweep_writes_one_folder_per_run_with_predictions_metrics_and_config(sweep_dir, corpus):
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["avgpool-x4", "identity"]
    examples = load_manifest(corpus)
    for run in ("identity", "avgpool-x4"):
        d = sweep_dir / run
        assert {p.name for p in d.iterdir()} == {"config.json", "predictions.jsonl", "metrics.json"}
        got = rows(d / "predictions.jsonl")
        assert [r["id"] for r in got] == [e.id for e in examples]  # every row, in benchmark order
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["rows"] == metrics["benchmark_rows"] == 8 and metrics["complete"]
        assert set(metrics["metrics"]["per_task"]) == {"asr_short", "speaker_count", "speaker_gender", "summary"}
        assert set(metrics["metrics"]["overall"]) == {"wer", "numeric_accuracy", "mc_accuracy", "rouge_l"}
        config = json.loads((d / "config.json").read_text())
        assert config["press"]["label"] == run and config["generation"]["max_new_tokens"] == 4


def test_cost_columns_are_real_and_agree_with_the_analytic_model(sweep_dir):
    ident, pooled = rows(sweep_dir / "identity" / "predictions.jsonl"), rows(sweep_dir / "avgpool-x4" / "predictions.jsonl")
    for a, b in zip(ident, pooled):
        assert a["encoder_tokens"] == b["encoder_tokens"] == math.ceil(a["duration"] * 25 - 1e-9)
        assert a["llm_audio_tokens"] == a["cached_audio_tokens"] == a["encoder_tokens"]
        assert b["llm_audio_tokens"] == math.ceil(a["encoder_tokens"] / 4)
        assert b["audio_tokens_per_second"] == pytest.approx(b["cached_audio_tokens"] / b["duration"])
        # KV bytes read off the cache tensors equal the analytic count: 2 (K, V) x 2 layers x 2 KV heads x 16 dims x 4 B.
        assert a["kv_bytes"] == a["kv_bytes_analytic"] == (a["prefix_tokens"] + a["cached_audio_tokens"]) * 2 * 2 * 2 * 16 * 4
        assert b["kv_bytes"] < a["kv_bytes"]
        assert a["peak_memory_kind"] == "process_peak_rss" and a["peak_memory_bytes"] > 0
        assert a["prefill_seconds"] > 0 and a["decode_seconds"] > 0 and 1 <= a["new_tokens"] + 1 <= 5
    for got in (ident, pooled):
        counted = [r for r in got if r["prefill_flops_measured"] is not None]
        assert len(counted) == 1 and counted[0] is got[0]  # --count-flops first: the run's first prefill only
        assert counted[0]["prefill_flops_measured"] == pytest.approx(counted[0]["prefill_flops_analytic"], rel=0.10)
    # Compress once, ask many: 4 audio groups, so 4 prefills serve 8 questions.
    assert [r["prefill_shared"] for r in ident] == [False, False, True, True] * 2
    assert len({r["prefill_id"] for r in ident}) == 4
    cost = json.loads((sweep_dir / "avgpool-x4" / "metrics.json").read_text())["cost"]
    assert cost["prefills"] == 4 and cost["questions"] == 8 and cost["recordings"] == 4
    assert cost["compression_factor"] == pytest.approx(sum(r["encoder_tokens"] for r in pooled if not r["prefill_shared"])
                                                       / sum(r["cached_audio_tokens"] for r in pooled if not r["prefill_shared"]))
    assert 3.5 < cost["compression_factor"] <= 4.0 and cost["flops_counted_prefills"] == 1


def test_metrics_are_exact_for_known_answers(tmp_path, corpus, model_dir, monkeypatch):
    """Answers fixed per question (right for the 8 s recording, wrong for the 12 s one) give known scores."""
    examples = load_manifest(corpus)
    right = {(round(e.duration, 2), e.text_prompt()): e.answer for e in examples}
    wrong = {"asr_short": "", "speaker_count": "seven", "speaker_gender": "B", "summary": ""}
    task_of = {(round(e.duration, 2), e.text_prompt()): e.task for e in examples}
    original = SpeechLM.answer

    def oracle(self, context, question, **kw):
        ans = original(self, context, question, **kw)
        key = (round(context.duration, 2), question)
        first_recording = next(e for e in examples if (round(e.duration, 2), e.text_prompt()) == key).audio.name.endswith("00000.flac")
        return dataclasses.replace(ans, text=right[key] if first_recording else wrong[task_of[key]])

    monkeypatch.setattr(SpeechLM, "answer", oracle)
    runner = Runner(str(model_dir), tmp_path, generation={"max_new_tokens": 2}, count_flops="none", progress=False)
    result = runner.run(resolve_benchmark(str(corpus)), RunSpec("identity"))
    overall = result.metrics["metrics"]["overall"]
    assert overall["mc_accuracy"]["pooled"]["score"] == 0.5
    assert overall["numeric_accuracy"]["pooled"]["score"] == 0.5
    assert overall["rouge_l"]["pooled"]["score"] == 0.5  # exact summary: F1 1; empty: 0
    asr = [e for e in examples if e.task == "asr_short"]
    words = [len(normalize_english(e.answer).split()) for e in asr]
    assert overall["wer"]["pooled"]["score"] == pytest.approx(words[1] / sum(words))  # the second is all deletions
    assert result.metrics["metrics"]["per_task"]["speaker_gender"]["mc_accuracy"]["correct"] == 1


def test_two_runs_agree_exactly(tmp_path, sweep_dir, corpus, model_dir):
    assert main(["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--out", str(tmp_path),
                 "--no-progress", "--count-flops", "none", *GEN]) == 0
    again = rows(next(tmp_path.glob("*/tiny/identity")) / "predictions.jsonl")
    assert [stable(r) for r in again] == [stable(r) for r in rows(sweep_dir / "identity" / "predictions.jsonl")]
    first = json.loads((sweep_dir / "identity" / "metrics.json").read_text())["metrics"]
    second = json.loads((next(tmp_path.glob("*/tiny/identity")) / "metrics.json").read_text())["metrics"]
    assert first == second


# ------------------------------------------------------------------------------------------------- resume
def test_resume_keeps_finished_rows_untouched_and_answers_only_the_rest(tmp_path, sweep_dir, corpus, model_dir, capsys):
    args = ["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--out", str(tmp_path), "--no-progress",
            "--count-flops", "none", *GEN]
    assert main(args + ["--limit", "3"]) == 0
    run = next(tmp_path.glob("*/tiny/identity"))
    before = rows(run / "predictions.jsonl")
    assert len(before) == 3 and json.loads((run / "metrics.json").read_text())["complete"] is False
    capsys.readouterr()
    assert main(args) == 0
    assert "8 rows (5 new)" in capsys.readouterr().out
    after = rows(run / "predictions.jsonl")
    assert after[:3] == before  # byte-identical rows, timings included: not recomputed
    # The 4th question shares audio with rows 2-3, done earlier: it is answered from a prefill of that audio again,
    # recorded as the prefill those rows hold, as an uninterrupted run records it.
    assert after[3]["prefill_id"] == before[2]["prefill_id"] and after[3]["prefill_shared"]
    assert [stable(r) for r in after] == [stable(r) for r in rows(sweep_dir / "identity" / "predictions.jsonl")]
    capsys.readouterr()
    assert main(args) == 0  # finished: skipped
    assert "finished earlier (skipped)" in capsys.readouterr().out


# Cost fields that measure this process (time, memory), not the run.
MEASURED = {"prefill_seconds_mean", "prefill_seconds_total", "decode_seconds_mean", "decode_seconds_per_token",
            "peak_memory_bytes"}


@pytest.mark.parametrize("first", [1, 3, 5])
def test_a_resumed_run_has_the_cost_summary_of_an_uninterrupted_one(first, tmp_path, sweep_dir, corpus, model_dir):
    # The summary (prefills, mean KV bytes, the measured k that `report` plots, FLOPs counted on the first prefill)
    # must not depend on where the run was interrupted, even in the middle of an audio group.
    args = ["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--out", str(tmp_path), "--no-progress", *GEN]
    assert main(args + ["--limit", str(first)]) == 0
    assert main(args) == 0
    run = next(tmp_path.glob("*/tiny/identity"))
    resumed = json.loads((run / "metrics.json").read_text())["cost"]
    whole = json.loads((sweep_dir / "identity" / "metrics.json").read_text())["cost"]
    assert resumed["prefills"] == 4 and resumed["flops_counted_prefills"] == 1
    assert {k: v for k, v in resumed.items() if k not in MEASURED} == {k: v for k, v in whole.items() if k not in MEASURED}


def test_a_half_written_line_from_a_crash_is_discarded_and_redone(tmp_path, sweep_dir, corpus, model_dir, monkeypatch):
    run = tmp_path / "corpus-test" / "tiny" / "identity"
    shutil.copytree(sweep_dir / "identity", run)
    (run / "metrics.json").unlink()
    text = (run / "predictions.jsonl").read_text()
    lines = text.splitlines(keepends=True)
    cut = "".join(lines[:5]) + lines[5][: len(lines[5]) // 2]  # the crash hit row 6 mid-write
    (run / "predictions.jsonl").write_text(cut)
    prefills = []
    original = SpeechLM.prefill

    def counting(self, *a, **kw):
        prefills.append(1)
        return original(self, *a, **kw)

    monkeypatch.setattr(SpeechLM, "prefill", counting)
    runner = Runner(str(model_dir), tmp_path, generation={"max_new_tokens": 4}, count_flops="none", progress=False)
    bench = resolve_benchmark(str(corpus), name="corpus-test")
    result = runner.run(bench, RunSpec("identity"))
    assert result.new_rows == 3 and len(prefills) == 1  # rows 6-8 share one audio group: one prefill
    redone = rows(run / "predictions.jsonl")
    original_rows = rows(sweep_dir / "identity" / "predictions.jsonl")
    assert redone[:5] == original_rows[:5]
    assert [stable(r) for r in redone[5:]] == [stable(r) for r in original_rows[5:]]


def test_finished_runs_are_skipped_without_loading_the_model(tmp_path, sweep_dir, corpus, model_dir, monkeypatch):
    shutil.copytree(sweep_dir, tmp_path / "corpus-test" / "tiny")

    def refuse(*a, **kw):
        raise AssertionError("the model was loaded for a finished run")

    monkeypatch.setattr(SpeechLM, "from_pretrained", refuse)
    runner = Runner(str(model_dir), tmp_path, generation={"max_new_tokens": 4}, progress=False)
    bench = resolve_benchmark(str(corpus), name="corpus-test")
    for spec in sweep(["identity", "avgpool"], [4]):
        assert runner.run(bench, spec).skipped


def test_a_rerun_with_other_settings_is_refused(tmp_path, sweep_dir, corpus, model_dir, capsys):
    shutil.copytree(sweep_dir, tmp_path / "corpus-test" / "tiny")
    code = main(["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--name", "corpus-test", "--out",
                 str(tmp_path), "--max-new-tokens", "9"])
    assert code == 2 and "other settings (generation differ)" in _err_line(capsys)


# ------------------------------------------------------------------------------------ compress once, ask many
@pytest.mark.parametrize("press", ["identity", "avgpool:4", "sst:4"])
def test_one_prefill_for_many_questions_equals_a_prefill_per_question(press):
    from helpers import tiny_model

    model, audio = tiny_model(), speech(8.0)
    questions = ["Who speaks?", "How many people speak?", "Transcribe the speech."]
    with pytest.warns(UserWarning) if press.startswith("sst") else _nullcontext():
        chain = model.press_chain(press)
    shared = model.prefill(audio, chain)
    once = [model.answer(shared, q, max_new_tokens=6).token_ids for q in questions]
    each = [model.answer(model.prefill(audio, chain), q, max_new_tokens=6).token_ids for q in questions]
    assert once == each and all(once)


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


def test_a_query_aware_press_prefills_once_per_question(tmp_path, corpus, model_dir):
    runner = Runner(str(model_dir), tmp_path, generation={"max_new_tokens": 2}, count_flops="none", progress=False)
    result = runner.run(resolve_benchmark(str(corpus)), RunSpec("speechprune", 2.0), limit=3)
    got = rows(result.run_dir / "predictions.jsonl")
    assert all(r["query_in_compression"] and not r["prefill_shared"] for r in got)
    assert len({r["prefill_id"] for r in got}) == 3


# ------------------------------------------------------------------------------------------------- sharding
def test_shards_merge_when_the_last_one_completes(tmp_path, sweep_dir, corpus, model_dir):
    bench = resolve_benchmark(str(corpus))
    out = {}
    for rank in (0, 1):
        runner = Runner(str(model_dir), tmp_path, generation={"max_new_tokens": 4}, count_flops="none",
                        progress=False, dist=Dist(rank=rank, world=2))
        out[rank] = runner.run(bench, RunSpec("identity"), limit=4)  # 2 audio groups, one per rank
    run = out[0].run_dir
    assert not out[0].complete and out[1].complete  # rank 0 finished first and left the merge to the last one
    keys = [{r["audio_key"] for r in rows(run / "shards" / f"rank{k}-of2.jsonl")} for k in (0, 1)]
    merged = rows(run / "predictions.jsonl")
    assert not keys[0] & keys[1] and keys[0] | keys[1] == {r["audio_key"] for r in merged}  # split by audio
    assert len(keys[0]) == len(keys[1]) == 1
    assert [stable(r) for r in merged] == [stable(r) for r in rows(sweep_dir / "identity" / "predictions.jsonl")[:4]]
    assert {r["rank"] for r in merged} == {0, 1}


def test_torchrun_two_processes_give_the_same_predictions_as_one(tmp_path, corpus, model_dir):
    """A real 2-process CPU run under torch.distributed.run (gloo barrier, rank 0 merges)."""
    def args(out):
        return ["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--press", "avgpool", "--ratio", "2",
                "--out", str(out), "--no-progress", "--count-flops", "none", "--limit", "5", *GEN]

    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "speechpress", *args(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as each torchrun worker
    try:
        assert main(args(tmp_path / "one")) == 0
    finally:
        torch.set_num_threads(threads)
    two = rows(next((tmp_path / "two").glob("*/tiny/avgpool-x2")) / "predictions.jsonl")
    one = rows(next((tmp_path / "one").glob("*/tiny/avgpool-x2")) / "predictions.jsonl")
    assert [stable(r) for r in two] == [stable(r) for r in one] and len(one) == 5  # 3 audio groups over 2 ranks
    assert {r["rank"] for r in two} == {0, 1} and {r["rank"] for r in one} == {0}
    m2 = json.loads((next((tmp_path / "two").glob("*/tiny/avgpool-x2")) / "metrics.json").read_text())
    m1 = json.loads((next((tmp_path / "one").glob("*/tiny/avgpool-x2")) / "metrics.json").read_text())
    assert m2["metrics"] == m1["metrics"] and m2["rows"] == 5


# ------------------------------------------------------------------------------------------------- bad input
def test_sweep_crosses_bare_presses_with_ratios_and_runs_fixed_specs_once():
    labels = [s.label for s in sweep(["identity", "avgpool", "hfq@1.67", "avgpool:2+sst:8"], [2, 4], [3])]
    assert labels == ["identity", "avgpool-x2", "avgpool-x4", "avgpool-3tps", "hfq-1.67tps", "avgpool-x2+sst-x8"]


@pytest.mark.parametrize("case", ["missing model", "file as model", "unknown benchmark", "bad manifest", "unknown press",
                                  "bad ratio", "zero limit"])
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(case, tmp_path, corpus, model_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    first = json.loads(corpus.read_text().splitlines()[0])
    first["audio"] = str(corpus.parent / first["audio"])
    bad.write_text(json.dumps(first) + "\n{not json\n")
    (tmp_path / "file").write_text("x")
    argv = {"model": str(model_dir), "benchmark": str(corpus), "press": "identity", "extra": []}
    if case == "missing model":
        argv["model"] = str(tmp_path / "nope")
    elif case == "file as model":
        argv["model"] = str(tmp_path / "file")
    elif case == "unknown benchmark":
        argv["benchmark"] = "no-such-benchmark"
    elif case == "bad manifest":
        argv["benchmark"] = str(bad)
    elif case == "unknown press":
        argv["press"] = "squeeze"
    elif case == "bad ratio":
        argv["press"], argv["extra"] = "avgpool", ["--ratio", "0.5"]
    else:
        argv["extra"] = ["--limit", "0"]
    out = tmp_path / "runs"
    code = main(["eval", "--model", argv["model"], "--benchmark", argv["benchmark"], "--press", argv["press"],
                 "--out", str(out), *argv["extra"]])
    line = _err_line(capsys)
    assert code == 2
    if case == "bad manifest":
        assert "bad.jsonl:2" in line and "malformed JSON" in line
    if case == "unknown benchmark":
        assert "unknown benchmark" in line
    assert not any(p.is_file() for p in out.rglob("*")) if out.exists() else True


def test_model_label_names_training_outputs_after_their_run(tmp_path):
    from speechpress.evaluate.sweep import model_label

    (tmp_path / "phase3" / "model").mkdir(parents=True)
    (tmp_path / "speechpress-tiny").mkdir()
    assert model_label(str(tmp_path / "phase3" / "model")) == "phase3"
    assert model_label(str(tmp_path / "speechpress-tiny")) == "speechpress-tiny"
    assert model_label("Qwen/Qwen2-Audio-7B-Instruct") == "Qwen--Qwen2-Audio-7B-Instruct"


# ------------------------------------------------------------------------------------------------- choice scoring
def test_loglik_answers_multiple_choice_by_the_options_likelihood_and_the_rest_as_before(tmp_path, sweep_dir, corpus, model_dir):
    """--choice-scoring loglik: multiple-choice rows ask the bare question and pick the likeliest option, scored
    exactly as a recomputation on a fresh prefill says; every other row is the generated run's row."""
    assert main(["eval", "--model", str(model_dir), "--benchmark", str(corpus), "--out", str(tmp_path),
                 "--choice-scoring", "loglik", "--no-progress", "--count-flops", "none", *GEN]) == 0
    run = next(tmp_path.glob("*/tiny+loglik/identity"))
    assert json.loads((run / "config.json").read_text())["choice_scoring"] == "loglik"
    got, generated = rows(run / "predictions.jsonl"), rows(sweep_dir / "identity" / "predictions.jsonl")
    examples = {e.id: e for e in load_manifest(corpus)}
    model = SpeechLM.from_pretrained(str(model_dir))
    mc = [r for r in got if r["choices"]]
    assert mc and len(mc) < len(got)
    for row, gen in zip(got, generated):
        if not row["choices"]:
            assert stable(row) == stable(gen)
            continue
        e = examples[row["id"]]
        assert row["question"] == e.prompt and row["new_tokens"] == 0
        from speechpress.audio import load_audio

        audio = load_audio(str(e.audio), target_rate=16000)
        sr = audio.sample_rate
        clip = audio.samples[int(round(e.offset * sr)) : int(round((e.offset + e.duration) * sr))]
        again = [float(lp.sum()) for lp in model.choice_logprobs(model.prefill(clip), e.prompt, e.choices)]
        assert row["choice_logprobs"] == pytest.approx(again, abs=1e-4)
        assert row["prediction"] == "ABCD"[max(range(len(again)), key=again.__getitem__)]
    metrics = json.loads((run / "metrics.json").read_text())
    scored = metrics["metrics"]["overall"]["mc_accuracy"]["pooled"]
    assert scored["score"] == sum(r["prediction"] == r["reference"] for r in mc) / len(mc)
    # Decoding time per token counts generated rows only; the options' scoring time is its own mean.
    written = [r for r in got if not r["choices"]]
    assert metrics["cost"]["decode_seconds_per_token"] == pytest.approx(
        sum(r["decode_seconds"] for r in written) / sum(r["new_tokens"] + 1 for r in written))
    assert metrics["cost"]["choice_seconds_mean"] == pytest.approx(sum(r["decode_seconds"] for r in mc) / len(mc))


def test_a_bundled_model_is_evaluated_by_name(tmp_path, corpus):
    """--model speechpress-tiny from any directory, as ask and transcribe take it (eval refused the name before)."""
    assert main(["eval", "--model", "speechpress-tiny", "--benchmark", str(corpus), "--out", str(tmp_path), "--limit", "1",
                 "--no-progress", "--count-flops", "none", *GEN]) == 0
    run = next(tmp_path.glob("*/speechpress-tiny/identity"))
    assert len(rows(run / "predictions.jsonl")) == 1
    assert json.loads((run / "config.json").read_text())["model"] == "speechpress-tiny"

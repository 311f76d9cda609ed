"""The fidelity study's write-up: claims judged on runs whose answers are known by construction, and the whole
path from `speechpress eval` runs to docs/results.md on a tiny model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from speechpress.evaluate.study import Study, markdown, pr_label

ROOT = Path(__file__).resolve().parents[1]


def run(press: str, right: list[bool], benchmark="study-90s", seconds=1.0) -> dict:
    rows = [dict(id=f"q{i}", task="sir" if i % 2 else "speaker_attribution", score_metric="mc_accuracy",
                 prediction="A" if ok else "B", reference="A", choices=["w", "x", "y", "z"], prefill_shared=i % 4 != 0,
                 audio_key=f"rec{i // 4}", encode_seconds=seconds, prefill_seconds=3 * seconds, decode_seconds=0.5)
            for i, ok in enumerate(right)]
    return dict(benchmark=benchmark, press=press, press_family=press.split("-")[0], cost={}, _rows=rows)


def test_pr_labels_keep_speechprunes_token_counts():
    # PR 0.2 keeps 600 of 750 phase-1 tokens; 90 s are 2,250 tokens: x3.75. PR 0.8 of 5 min: 7,500 / 150 = x50.
    assert pr_label("random", 0.2, 90) == "random-x3.75"
    assert pr_label("speechprune", 0.6, 90) == "speechprune-x7.5"
    assert pr_label("random", 0.8, 300) == "random-x50"


def test_claims_are_judged_by_paired_differences_and_need_a_model_above_chance():
    n = 80
    runs = [run("identity", [True] * n), run("speechprune-x3.75", [i % 10 != 0 for i in range(n)]),
            run("random-x3.75", [i % 2 == 0 for i in range(n)]), run("speechprune-x4", [i % 2 == 0 for i in range(n)]),
            run("random-x4", [i % 2 == 0 for i in range(n)]), run("truncate", [i % 4 == 0 for i in range(n)])]
    claims = {c["claim"].split()[0]: c for c in Study(runs).claims()}
    by_pair = {(r["a"], r["b"]): r for c in claims.values() for r in c["results"]}
    pr02 = by_pair[("speechprune-x3.75", "random-x3.75")]
    assert pr02["diff"] == pytest.approx(0.4) and pr02["n"] == n  # 0.9 - 0.5
    assert pr02["verdict"] == "reproduced"  # paper: +0.47; at least half of it, interval above zero
    same = by_pair[("speechprune-x4", "random-x4")]
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0] and same["verdict"].startswith("not (no difference")
    assert by_pair[("identity", "truncate")]["verdict"] == "reproduced"
    assert claims["HFQ-Former"]["results"] == [] and "HFQ-Former trained" in claims["HFQ-Former"]["gap"]
    # The same presses on a model at chance: nothing can be judged.
    chance = [dict(r, _rows=[dict(x, prediction="A" if i % 4 == 0 else "B") for i, x in enumerate(r["_rows"])])
              if r["press"] == "identity" else r for r in runs]
    verdict = next(r for c in Study(chance).claims() for r in c["results"] if r["a"] == "speechprune-x3.75")["verdict"]
    assert verdict.startswith("not testable: uncompressed accuracy 0.25")


def test_cost_counts_each_recording_once_and_each_prefill_once():
    study = Study([run("identity", [True] * 8, seconds=1.0), run("random-x4", [True] * 8, seconds=1.0)])
    cost = study.cost("study-90s")
    # 8 rows per run, a prefill every 4 rows (2 per run), 2 recordings; encode 1 s, prefill 3 s incl. encoding.
    assert cost == dict(runs=2, encode=2.0, prefill=2 * 2 * 2.0, decode=2 * 8 * 0.5, total=2.0 + 8.0 + 8.0)
    text = markdown(study.runs)
    assert "## study-90s" in text and "| `identity` |" in text and "not run: the study holds no runs for it" in text


def test_results_from_real_eval_runs(tmp_path):
    from speechpress.cli import main
    from speechpress.data.synth import synthesize

    synthesize(tmp_path / "corpus", 5, split="test", durations=(20, 20), tasks=["speaker_attribution"])
    assert main(["init-model", "--out", str(tmp_path / "tiny")]) == 0
    out = tmp_path / "runs"
    assert main(["eval", "--model", str(tmp_path / "tiny"), "--benchmark", str(tmp_path / "corpus" / "test.jsonl"),
                 "--name", "study-90s", "--press", "identity", "truncate", "random:4", "--choice-scoring", "loglik",
                 "--out", str(out), "--no-progress", "--count-flops", "none"]) == 0
    doc = tmp_path / "results.md"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "fidelity_report.py"), str(out), "--out", str(doc),
                           "--model", "tiny"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = doc.read_text()
    assert "model: tiny" in text and "## study-90s" in text
    for label in ("`identity`", "`truncate`", "`random-x4`"):
        assert f"| {label} |" in text
    assert "`identity` - `truncate`" in text  # the Original floor was compared
    for where in (tmp_path / "nowhere", tmp_path / "corpus"):  # no folder; a folder with no study runs
        bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "fidelity_report.py"), str(where), "--out",
                              str(tmp_path / "bad.md")], capture_output=True, text=True)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr and str(where) in bad.stderr
    assert not (tmp_path / "bad.md").exists()


def test_transcription_under_a_press_is_judged_against_the_uncompressed_transcripts():
    def asr(press, words_right):
        ref = "red cats sit on mats"
        rows = [dict(id=f"a{i}", task="asr_short", score_metric="wer", reference=ref,
                     prediction=" ".join(w if j < words_right[i] else "x" for j, w in enumerate(ref.split())))
                for i in range(len(words_right))]
        return dict(benchmark="study-90s", press=press, press_family=press.split("-")[0], cost={}, _rows=rows)

    # Uncompressed: 1 word wrong in 5 on every clip (WER 0.2); sst x8: 3 wrong (0.6); sst x4: the same as uncompressed.
    study = Study([asr("identity", [4] * 20), asr("sst-x8", [2] * 20), asr("sst-x4", [4] * 20)])
    lost, kept = study.compare_wer("study-90s", "sst-x8"), study.compare_wer("study-90s", "sst-x4")
    assert lost["diff"] == pytest.approx(0.4) and lost["verdict"].startswith("lost")
    assert kept["diff"] == 0 and kept["verdict"].startswith("kept")
    # A loss the interval neither shows nor rules out is reported as open, not as kept.
    noisy = Study([asr("identity", [4] * 20), asr("tova-x4", [4, 0] * 10)])
    assert noisy.compare_wer("study-90s", "tova-x4")["verdict"].startswith("lost")
    wide = Study([asr("identity", [4] * 20), asr("tova-x4", [5, 3] * 10)])  # mean loss 0, but +0.2 on half the clips
    assert wide.compare_wer("study-90s", "tova-x4")["verdict"].startswith("unclear: no loss beyond noise")
    deaf = Study([asr("identity", [0] * 20), asr("sst-x8", [0] * 20)])
    assert deaf.compare_wer("study-90s", "sst-x8")["verdict"].startswith("not testable")
    assert study.compare_wer("study-90s", "avgpool-x4") is None
    # Two presses against each other: the one with fewer errors is named.
    pair = Study([asr("identity", [4] * 20), asr("snapkv-x4", [4] * 20), asr("avgpool-x4", [1] * 20)])
    better = pair.compare_wer("study-90s", "snapkv-x4", "avgpool-x4")
    assert better["diff"] == pytest.approx(-0.6) and better["verdict"] == "snapkv-x4 transcribes better beyond noise"
    assert pair.compare_wer("study-90s", "avgpool-x4", "snapkv-x4")["verdict"] == "snapkv-x4 transcribes better beyond noise"
    kv_claim = next(c for c in pair.claims() if c["claim"].startswith("KV-cache"))
    assert [r["verdict"] for r in kv_claim["results"]] == [better["verdict"], "kept: no WER loss beyond noise"]


def test_pruners_are_compared_by_the_answer_seconds_they_kept_even_at_chance():
    def pruned(press, spans_of):
        # 20 questions, 2 per prefill; the answer lies in [10, 14] s; the model answers at chance (all wrong).
        rows = [dict(id=f"q{i}", task="sir", score_metric="mc_accuracy", prediction="B", reference="A",
                     choices=["w", "x", "y", "z"], evidence=[[10.0, 14.0]], prefill_id=f"p{i // 2}",
                     **({"kept_spans": spans_of(i)} if i % 2 == 0 else {})) for i in range(20)]
        return dict(benchmark="study-90s", press=press, press_family=press.split("-")[0], cost={}, _rows=rows,
                    _kept={f"p{i // 2}": spans_of(i) for i in range(0, 20, 2)})

    # SpeechPrune keeps the whole answer on every question; random keeps [12, 13] (a quarter of it) on every question.
    study = Study([pruned("identity", lambda i: [[0.0, 90.0]]), pruned("speechprune-x3.75", lambda i: [[9.0, 15.0]]),
                   pruned("random-x3.75", lambda i: [[12.0, 13.0], [40.0, 45.0]])])
    got = study.compare_evidence("study-90s", "speechprune-x3.75", "random-x3.75")
    assert got["diff"] == pytest.approx(0.75) and got["ci"] == pytest.approx([0.75, 0.75]) and got["n"] == 20
    assert got["verdict"] == "speechprune-x3.75 keeps more of the answer's seconds beyond noise"
    assert got["a"].endswith("(answer's seconds kept, 100%)") and got["b"] == "random-x3.75 (25%)"
    claim = next(c for c in study.claims() if c["claim"].startswith("SpeechPrune"))
    verdicts = [r["verdict"] for r in claim["results"]]
    assert verdicts[0].startswith("not testable: uncompressed accuracy 0.00") and verdicts[1] == got["verdict"]
    assert study.compare_evidence("study-90s", "speechprune-x5", "random-x5") is None  # not run


def test_costs_are_per_whole_recording_whether_or_not_questions_share_a_prefill():
    def rows(shared: bool):
        # Two 90 s recordings, 4 questions each (100 MiB of cache per prefill), and 8 short clips of 1 MiB each.
        long = [dict(id=f"q{i}", duration=90.0, kv_bytes=100 * 2**20, prefill_shared=shared and i % 4 != 0)
                for i in range(8)]
        return long + [dict(id=f"c{i}", duration=6.0, kv_bytes=2**20, prefill_shared=False) for i in range(8)]

    study = Study([])
    shared = dict(_rows=rows(True), cost=dict(kv_bytes_mean=(2 * 100 + 8) / 10 * 2**20))
    per_question = dict(_rows=rows(False), cost=dict(kv_bytes_mean=(8 * 100 + 8) / 16 * 2**20))
    assert study.per_recording("study-90s", shared, "kv_bytes") == 100 * 2**20
    assert study.per_recording("study-90s", per_question, "kv_bytes") == 100 * 2**20
    # No full-length recording in the run: its own mean.
    assert study.per_recording("study-5min", shared, "kv_bytes") == shared["cost"]["kv_bytes_mean"]

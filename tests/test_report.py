"""speechpress report: report.md and PNG plots from a small real sweep plus a profile JSON file."""

import json

import pytest
from PIL import Image

from speechpress.cli import main

from eval_helpers import make_corpus, make_model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    corpus, model = make_corpus(root / "corpus"), make_model(root / "tiny")
    out = root / "runs"
    assert main(["eval", "--model", str(model), "--benchmark", str(corpus), "--press", "identity", "avgpool", "--ratio", "2",
                 "4", "--limit", "6", "--max-new-tokens", "3", "--out", str(out), "--no-progress", "--count-flops", "none"]) == 0
    return out


def test_report_writes_a_table_row_per_run_and_valid_pngs(runs, capsys, tmp_path):
    profile = tmp_path / "profile-tiny.json"
    assert main(["profile", "--model-config", "tiny", "--minutes", "1", "10", "--press", "avgpool", "--ratio", "4", "--json"]) == 0
    profile.write_text(capsys.readouterr().out)
    assert main(["report", str(runs), "--profile", str(profile)]) == 0
    assert "3 run(s)" in capsys.readouterr().out
    text = (runs / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| corpus-test |")]
    assert [line.split(" | ")[2] for line in table] == ["`identity`", "`avgpool-x2`", "`avgpool-x4`"]
    header = next(line for line in text.splitlines() if line.startswith("| benchmark |"))
    for column in ("k measured", "wer ↓", "mc_accuracy ↑", "numeric_accuracy ↑", "rouge_l ↑", "KV MiB", "peak MiB",
                   "prefill s", "prefill GFLOPs", "counted / analytic"):
        assert column in header
    # The table's figures are the runs' own: k measured and KV MiB of avgpool x4.
    metrics = json.loads((runs / "corpus-test" / "tiny" / "avgpool-x4" / "metrics.json").read_text())
    cells = table[2].split(" | ")
    assert cells[4] == f"{metrics['cost']['compression_factor']:.2f}" and cells[5] == "6/8"
    assert f"{metrics['cost']['kv_bytes_mean'] / 2**20:.3f}" in cells
    # Each score carries its bootstrap interval from metrics.json.
    for name, result in metrics["metrics"]["overall"].items():
        pooled = result["pooled"]
        assert (pooled["ci95"] is None) == (pooled["n"] < 2), name  # one row has nothing to resample
        ci = pooled["ci95"]
        assert f"{pooled['score']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") in cells, name
    assert any(r["pooled"]["ci95"] for r in metrics["metrics"]["overall"].values())
    assert "`profile-tiny`: 2 duration(s), without measured rows" in text
    for name in ("accuracy_vs_compression.png", "accuracy_vs_kv.png", "cost_vs_duration.png"):
        with Image.open(runs / name) as img:
            img.verify()
        with Image.open(runs / name) as img:
            assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 200
            low, high = img.convert("L").getextrema()
            assert high - low > 100  # not a blank canvas
    assert not list(runs.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_report_of_a_folder_without_runs_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no finished eval run" in err and err.count("\n") == 1
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such runs folder" in capsys.readouterr().err


def test_report_rejects_a_file_that_is_not_profile_output(runs, tmp_path, capsys):
    bad = tmp_path / "profile.json"
    bad.write_text('{"not": "a profile"}')
    assert main(["report", str(runs), "--profile", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "not the output of `speechpress profile --json`" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.md").exists()


def test_report_scores_a_run_without_intervals_again_from_its_rows(runs, tmp_path):
    # A run finished before scores carried intervals: the report scores its rows again, to the same figures.
    import shutil

    from speechpress.evaluate.report import load_runs

    copy = tmp_path / "old"
    shutil.copytree(runs / "corpus-test" / "tiny" / "avgpool-x2", copy / "avgpool-x2")
    path = copy / "avgpool-x2" / "metrics.json"
    doc = json.loads(path.read_text())
    want = json.loads(json.dumps(doc["metrics"]["overall"]))
    for v in doc["metrics"]["overall"].values():
        del v["pooled"]["ci95"]
    path.write_text(json.dumps(doc))
    (got,) = load_runs(copy)
    assert got["metrics"]["overall"] == want


def test_timelines_show_the_seconds_each_press_kept_and_where_the_answer_is(tmp_path, capsys):
    # Who-said-it questions (the quoted utterance's seconds are known) on two 20 s recordings, uncompressed and with half the tokens dropped at random: the
    # uncompressed run covers the whole recording in one interval, random keeps about half of it in pieces, and
    # each row's evidence is its needle's seconds from the generator's metadata.
    from speechpress.data.synth import synthesize

    from eval_helpers import rows

    synthesize(tmp_path / "corpus", 4, split="test", durations=(20, 20), tasks=["speaker_attribution", "speaker_count"])
    model, out = make_model(tmp_path / "tiny"), tmp_path / "runs"
    assert main(["eval", "--model", str(model), "--benchmark", str(tmp_path / "corpus" / "test.jsonl"), "--press",
                 "identity", "random", "--ratio", "2", "--max-new-tokens", "2", "--out", str(out), "--no-progress",
                 "--count-flops", "none"]) == 0
    bench = json.loads((tmp_path / "corpus" / "test.jsonl").read_text().splitlines()[0])  # any row: its recording
    run_rows = {p.parent.name: rows(p) for p in out.rglob("predictions.jsonl")}
    full, half = run_rows["identity"], run_rows["random-x2"]
    needles = [r for r in full if r["task"] == "speaker_attribution"]
    assert needles and all(r["evidence"] for r in needles)
    assert all(r["evidence"] is None for r in full if r["task"] == "speaker_count")
    manifest = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "corpus" / "test.jsonl").read_text().splitlines()}
    for r in needles:
        needle = manifest[r["id"]]["metadata"]["quoted"]
        assert r["evidence"] == [[round(needle["start"] - r["offset"], 3), round(needle["end"] - r["offset"], 3)]]
    firsts = [r for r in full if not r["prefill_shared"]]
    assert firsts and all(len(r["kept_spans"]) == 1 and r["kept_spans"][0][0] == 0.0
                          and abs(r["kept_spans"][0][1] - r["duration"]) < 0.05 for r in firsts)
    assert all(r["kept_spans"] is None for r in full if r["prefill_shared"])
    for r in (r for r in half if not r["prefill_shared"]):
        covered = sum(b - a for a, b in r["kept_spans"])
        assert len(r["kept_spans"]) > 5 and 0.4 * r["duration"] < covered < 0.6 * r["duration"]
    assert bench["task"] in ("speaker_attribution", "speaker_count")

    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "`timeline_corpus-test.png`" in text
    with Image.open(out / "timeline_corpus-test.png") as img:
        assert img.format == "PNG" and img.size[1] > 300
    from speechpress.evaluate.report import load_runs, timeline_questions

    chosen = timeline_questions(load_runs(out))["corpus-test"]
    assert chosen and all(i in {r["id"] for r in needles} for i in chosen)


def test_covered_share_of_the_answer():
    from speechpress.evaluate.report import answer_seconds_kept

    assert answer_seconds_kept([[0, 10]], [[2, 4]]) == 1.0
    assert answer_seconds_kept([[0, 3], [3.5, 5]], [[2, 4]]) == pytest.approx(0.75)  # 1 s of [2, 3] + 0.5 s of [3.5, 4]
    assert answer_seconds_kept([[5, 6]], [[2, 4], [7, 8]]) == 0.0
    assert answer_seconds_kept([[1, 2]], []) == 0.0


def test_kv_per_minute_charges_each_recording_once_whether_or_not_questions_share_a_prefill():
    from speechpress.evaluate.report import kv_mib_per_minute

    # One 90 s recording with 30 MiB of cache, asked 5 questions; 3 clips of 6 s with 4 MiB each (the prompt
    # weighs more on a short clip): (30 + 12) MiB over 108 s, whether the 5 questions share a prefill or not.
    def rows(shared):
        return ([dict(audio_key="rec", duration=90.0, kv_bytes=30 * 2**20, prefill_shared=shared and i > 0)
                 for i in range(5)]
                + [dict(audio_key=f"clip{i}", duration=6.0, kv_bytes=4 * 2**20, prefill_shared=False) for i in range(3)])

    expected = 42 / 108 * 60
    assert kv_mib_per_minute(dict(_rows=rows(True))) == pytest.approx(expected)
    assert kv_mib_per_minute(dict(_rows=rows(False))) == pytest.approx(expected)
    assert kv_mib_per_minute(dict(_rows=[])) is None

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
    for name in ("accuracy_vs_compression.png", "cost_vs_duration.png"):
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

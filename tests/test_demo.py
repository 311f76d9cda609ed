"""`speechpress demo`: a generated recording answered uncompressed and compressed, one prefill per press."""

from __future__ import annotations

import json

import pytest

from speechpress.cli import main
from speechpress.cli.commands import demo


def test_demo_runs_end_to_end_and_reports_costs(tmp_path, capsys):
    assert main(["init-model", "--out", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    argv = ["demo", "--model", str(tmp_path / "m"), "--minutes", "0.75", "--press", "avgpool:4", "--keep", str(tmp_path / "rec")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "rec" / "test.jsonl").read_text().splitlines()]
    asked = [r for r in rows if r["task"] in demo.DEMO_TASKS]
    assert asked and out.count("\nQ") == len(asked)
    for r in asked:  # every question is shown with its gold answer
        assert r["prompt"] in out
    # 45 s -> 1125 tokens; avgpool:4 -> 282 (ceil); both presses summarised with their KV cache
    assert "identity" in out and "1125 -> 1125" in out and "1125 -> 282" in out
    assert "peak memory of this process" in out


def test_demo_without_bundled_model_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(demo, "BUNDLED", tmp_path / "missing")
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pass --model" in err


def test_a_setting_that_does_not_fit_the_llm_is_refused_before_encoding(tmp_path, capsys, monkeypatch):
    """45 s is 1,125 audio tokens; an LLM of 1,000 positions takes avgpool:4 (282) but not the uncompressed row, and
    the demo says so before it spends anything on the encoder."""
    from speechpress.model.speechlm import SpeechLM

    assert main(["init-model", "--out", str(tmp_path / "m")]) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["llm"]["max_position_embeddings"] = 1000
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(SpeechLM, "encode", lambda *a, **k: pytest.fail("encoded before the check"))
    capsys.readouterr()
    assert main(["demo", "--model", str(tmp_path / "m"), "--minutes", "0.75", "--press", "avgpool:4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 0.8 min of audio takes 1125 positions") and err.count("\n") == 1, err

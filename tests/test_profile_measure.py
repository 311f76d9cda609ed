"""speechpress profile --measure: measured rows (random-weight tiny model on CPU) agree with the analytic model."""

import json

import pytest

from speechpress.cli import main


def _check_agreement(measured: dict):
    a = measured["analytic"]
    assert measured["audio_tokens_encoder"] == a["audio_tokens_encoder"]
    assert measured["audio_tokens"] == a["audio_tokens"]
    assert measured["kv_tokens"] == a["kv_tokens"]
    assert measured["kv_bytes"] == pytest.approx(a["kv_bytes"], rel=0.10)
    assert measured["prefill_flops"] == pytest.approx(a["prefill_flops"], rel=0.10)
    # Module by module: the counted encoder and LLM are the analytic ones (the log-mel is the only extra).
    assert measured["flops"]["encoder"] == pytest.approx(a["encoder_flops"], rel=0.01)
    assert measured["flops"]["llm"] == pytest.approx(a["llm_prefill_flops"], rel=0.10)


@pytest.mark.parametrize("press", [["--press", "avgpool", "--ratio", "4"], ["--press", "sst", "--ratio", "4"]])
def test_measured_rows_agree_with_analytic_within_10_percent(press, capsys):
    argv = ["profile", "--model-config", "tiny", "--minutes", "0.25", "--measure", "--dtype", "fp32", "--device", "cpu",
            "--measure-answer-tokens", "2", "--json", *press]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["minutes"] == 0.25
    meas = rows[0]["measured"]
    for side in ("uncompressed", "compressed"):
        _check_agreement(meas[side])
        assert meas[side]["device"] == "cpu" and meas[side]["peak_memory_kind"] == "process_peak_rss"
        assert meas[side]["prefill_seconds"] > 0 and meas[side]["peak_bytes"] > 0
    assert meas["uncompressed"]["audio_tokens"] == 375  # 15 s at 25 tokens/s
    assert meas["compressed"]["audio_tokens"] == 94  # ceil(375 / 4): pooled tokens, or SSTs kept in the cache
    assert meas["compressed"]["kv_bytes"] < meas["uncompressed"]["kv_bytes"]


def test_measure_accepts_a_model_directory_and_prints_a_measured_table(tmp_path, capsys):
    assert main(["init-model", "--out", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert main(["profile", "--model-config", str(tmp_path / "m"), "--minutes", "0.2", "--measure", "--dtype", "fp32",
                 "--device", "cpu", "--measure-answer-tokens", "1"]) == 0
    out = capsys.readouterr().out
    assert "measured on cpu (fp32" in out and "peak memory is the process peak RSS" in out
    line = next(l for l in out.splitlines() if l.strip().startswith("0.2  uncompressed"))
    assert "300 / 300" in line  # 12 s x 25 tokens/s, measured / analytic


@pytest.mark.parametrize("argv, message", [
    (["--model-config", "no-such-model"], "unknown model config"),
    (["--model-config", "tiny", "--measure", "--dtype", "int8"], "--measure runs fp32, bf16 or fp16"),
])
def test_bad_profile_input_is_one_error_line(argv, message, capsys):
    assert main(["profile", "--minutes", "0.1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1

import json

import numpy as np
import pytest
import soundfile as sf

from speechpress.cli import main

from helpers import speech


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["init-model", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "talk.flac"
    sf.write(path, speech(40.0), 16000)
    return path


def _err_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_info_json_counts_tokens(wav, capsys):
    assert main(["info", str(wav), "--press", "avgpool", "--ratio", "4", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["duration_s"] == pytest.approx(40.0)
    assert row["windows"] == 2
    assert row["audio_tokens"] == 1000 and row["tokens_after_press"] == 250 and row["compression"] == 4.0


def test_ask_answers_every_question_from_one_prefill(wav, model_dir, capsys):
    code = main(["ask", str(wav), "Who?", "When?", "--model", str(model_dir), "--press", "avgpool", "--ratio", "2",
                 "--max-new-tokens", "4", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [a["question"] for a in out["answers"]] == ["Who?", "When?"]
    first = out["answers"][0]
    assert first["encoder_tokens"] == 1000 and first["llm_audio_tokens"] == 500 and first["press"] == "avgpool:2"
    assert out["peak_memory_bytes"] > 0
    assert all(len(a["token_ids"]) <= 4 for a in out["answers"])


def test_transcribe_chunks_long_audio(wav, model_dir, capsys):
    assert main(["transcribe", str(wav), "--model", str(model_dir), "--max-new-tokens", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(c["start"], c["end"]) for c in out["chunks"]] == [(0.0, 30.0), (30.0, 40.0)]


def test_presses_lists_registered_methods(capsys):
    assert main(["presses", "--json"]) == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert {"identity", "avgpool"} <= names


@pytest.mark.parametrize(
    "argv,reason",
    [
        (["info", "{wav}", "--press", "nope"], "unknown press 'nope'"),
        (["info", "{wav}", "--press", "avgpool", "--ratio", "0.5"], "must be >= 1"),
        (["ask", "{wav}", "q", "--model", "{tmp}"], "not a speechpress model"),
        (["ask", "{wav}", "q", "--model", "{tmp}/nothing-here"], "no such model directory"),
        (["ask", "{tmp}/missing.wav", "q", "--model", "{model}"], "no such file"),
        (["ask", "{wav}", "q", "--model", "{model}", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["init-model", "--config", "huge", "--out", "{tmp}/never"], "not a named config"),
    ],
)
def test_bad_input_exit_2_one_line(argv, reason, wav, model_dir, tmp_path, capsys):
    argv = [a.format(wav=wav, model=model_dir, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert reason in _err_line(capsys)
    assert not (tmp_path / "never").exists()


def test_init_model_refuses_to_overwrite(model_dir, capsys):
    before = (model_dir / "model.safetensors").read_bytes()
    assert main(["init-model", "--out", str(model_dir), "--seed", "5"]) == 2
    assert "already exists" in _err_line(capsys)
    assert (model_dir / "model.safetensors").read_bytes() == before


def test_init_model_from_yaml_config(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("encoder: {d_model: 32, encoder_layers: 1, encoder_attention_heads: 2, encoder_ffn_dim: 64, num_mel_bins: 80, max_source_positions: 1500}\n"
                   "llm: {model_type: qwen2, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1}\n"
                   "encoder_pool: 4\n")
    assert main(["init-model", "--config", str(cfg), "--out", str(tmp_path / "m")]) == 0
    wav = tmp_path / "a.wav"
    sf.write(wav, speech(2.0), 16000)
    capsys.readouterr()
    assert main(["info", str(wav), "--model", str(tmp_path / "m"), "--json"]) == 0
    # 2 s = 200 mel frames -> 100 encoder frames (stride 2) -> 25 tokens with encoder_pool 4
    assert json.loads(capsys.readouterr().out)["audio_tokens"] == 25


def test_press_options_reach_the_press_and_unknown_ones_are_refused(wav, capsys):
    # 1000 tokens: intervals of 300 -> 300, 300, 300, 100 -> 38 + 38 + 38 + 13 SSTs at alpha 8
    assert main(["info", str(wav), "--press", "sst", "--ratio", "8", "--press-option", "interval_tokens=300", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens_after_press"] == 127
    assert main(["info", str(wav), "--press", "avgpool", "--ratio", "8", "--press-option", "interval_tokens=300"]) == 2
    assert "takes the option(s) interval_tokens" in _err_line(capsys)
    assert main(["info", str(wav), "--press", "sst", "--press-option", "interval_tokens"]) == 2
    assert "KEY=VALUE" in _err_line(capsys)


@pytest.mark.parametrize(
    "argv,reason",
    [
        (["profile", "--model-config", "tiny", "--minutes", "1e12"], "--minutes must be at most 10000"),
        (["transcribe", "{wav}", "--model", "{model}", "--chunk-seconds", "0.001"], "--chunk-seconds must be at least 1"),
        (["transcribe", "{wav}", "--model", "{model}", "--chunk-seconds", "31"], "--chunk-seconds must be at most 30"),
        (["transcribe", "{wav}", "--model", "{model}", "--chunk-seconds", "nan"], "--chunk-seconds must be a finite number"),
        (["ask", "{wav}", "q", "--model", "{model}", "--top-p", "5"], "--top-p must be at most 1"),
        (["ask", "{wav}", "q", "--model", "{model}", "--top-p", "0"], "--top-p must be more than 0"),
        (["ask", "{wav}", "q", "--model", "{model}", "--temperature", "0"], "--temperature must be more than 0"),
        (["ask", "{wav}", "q", "--model", "{model}", "--top-k", "-1"], "--top-k must be at least 0"),
        (["eval", "--model", "{model}", "--benchmark", "{wav}", "--top-p", "inf"], "--top-p must be a finite number"),
    ],
)
def test_numbers_outside_their_limits_are_refused_before_any_work(argv, reason, wav, model_dir, tmp_path, capsys):
    import time

    argv = [a.format(wav=wav, model=model_dir, tmp=tmp_path) for a in argv]
    start = time.perf_counter()
    assert main(argv) == 2
    assert reason in _err_line(capsys)
    assert time.perf_counter() - start < 20  # profile --minutes 1e12 used to count 2e12 windows one by one



def _output_commands(wav, model_dir, tmp_path):
    """Each command that writes a folder, as argv with {out} where its output folder goes."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(dict(id="a", audio=str(wav), task="asr_long", prompt="Transcribe.", answer="x",
                                        metric="wer")) + "\n")
    config = tmp_path / "train.yaml"
    config.write_text(f"recipe: asr\noutput_dir: '{{out}}'\ndata: {{train: ['{manifest}']}}\n")
    return {
        "init-model": ["init-model", "--out", "{out}"],
        "synth": ["synth", "--out", "{out}", "--seed", "0", "--durations", "5", "--split", "test"],
        "eval": ["eval", "--model", str(model_dir), "--benchmark", str(manifest), "--out", "{out}", "--no-progress",
                 "--max-new-tokens", "1"],
        "train": ["train", str(config), "output_dir={out}"],
        "report": ["report", str(tmp_path), "--out", "{out}"],
    }


@pytest.mark.parametrize("command", ["init-model", "synth", "eval", "train", "report"])
@pytest.mark.parametrize("where,reason", [("file", "exists and is not a directory"),
                                          ("file/sub", "cannot be created: {file} is a file"),
                                          ("read-only/sub", "cannot write there ({ro}): read-only file system")])
def test_an_output_folder_that_cannot_be_written_is_one_error_line(command, where, reason, wav, model_dir, tmp_path,
                                                                    monkeypatch, capsys):
    import os

    argv = _output_commands(wav, model_dir, tmp_path)[command]
    (tmp_path / "file").write_text("not a folder\n")
    (tmp_path / "read-only").mkdir()
    ro = str(tmp_path / "read-only")
    if where.startswith("read-only"):  # root writes through chmod, so the file system's answer is simulated
        access, statvfs = os.access, os.statvfs
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == ro else access(p, mode, **kw))

        class ReadOnly:
            f_flag = os.ST_RDONLY

        monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly() if str(p) == ro else statvfs(p))
    before = sorted(tmp_path.rglob("*"))
    out = str(tmp_path / where)
    assert main([a.replace("{out}", out) for a in argv]) == 2
    assert reason.format(file=tmp_path / "file", ro=ro) in _err_line(capsys)
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "file").read_text() == "not a folder\n"


def test_a_write_that_fails_midway_is_one_error_line(wav, model_dir, tmp_path, monkeypatch, capsys):
    import errno

    import speechpress.evaluate.report as report

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    assert main(["profile", "--model-config", "tiny", "--minutes", "1", "--json"]) == 0
    (tmp_path / "profile-x.json").write_text(capsys.readouterr().out)
    monkeypatch.setattr(report, "atomic_write_text", full)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "cannot write (No space left on device)" in _err_line(capsys)

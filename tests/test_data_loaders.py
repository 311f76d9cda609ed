"""Every loader on small files written in the published formats, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechpress.cli import main
from speechpress.data.loaders import (
    load_audiomarathon, load_examples, load_longspeech, load_manifest, load_spiral,
)
from speechpress.errors import DataError

SR = 16000


def _tone(path: Path, seconds: float, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR, format=fmt)
    return path


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _row(**kw) -> dict:
    row = dict(id="x", audio="a.flac", offset=0.5, duration=1.0, task="sir", prompt="Where?",
               choices=["in Oslo", "in Lima", "in Cairo", "in Riga"], answer="C", metric="accuracy",
               metadata={"needle": {"depth": 0.5}})
    row.update(kw)
    return row


def test_manifest_loader_resolves_audio_and_fields(tmp_path):
    _tone(tmp_path / "a.flac", 2.0)
    _tone(tmp_path / "sub" / "b.wav", 1.0)
    m = _jsonl(tmp_path / "m.jsonl", [_row(), "", _row(id="y", audio="sub/b.wav", task="asr_short", choices=None,
                                                        answer="hello there", metric="wer", offset=0, duration=None)])
    ex = load_manifest(m)
    assert [e.id for e in ex] == ["x", "y"] and ex.skipped == 0
    assert ex[0].audio == (tmp_path / "a.flac").resolve() and ex[0].answer_text() == "in Cairo"
    assert ex[0].metadata["needle"]["depth"] == 0.5 and "C. in Cairo" in ex[0].text_prompt()
    assert ex[1].duration == pytest.approx(1.0) and ex[1].choices is None and ex[1].text_prompt() == "Where?"
    assert ex[0].to_row(tmp_path)["audio"] == "a.flac"


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"id": "x", "audio": ', "malformed JSON"),
        (_row(audio="missing.flac"), "audio file not found"),
        (_row(task="karaoke"), "unknown task 'karaoke'"),
        (_row(offset=2.5), "offset 2.5 s is past the end of the audio"),
        (_row(offset=1.5, duration=1.0), "past the end of the audio"),
        ({k: v for k, v in _row().items() if k not in ("answer", "metric")}, "missing field(s): answer, metric"),
        (_row(answer="E"), "is not one of the 4 choices"),
        (_row(metric="vibes"), "unknown metric"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_manifest_bad_rows_name_file_and_line(tmp_path, bad, message):
    _tone(tmp_path / "a.flac", 2.0)
    m = _jsonl(tmp_path / "m.jsonl", [_row(), _row(id="y"), bad, _row(id="z")])
    with pytest.raises(DataError) as err:
        load_manifest(m)
    assert f"{m}:3:" in str(err.value) and message in str(err.value)
    kept = load_manifest(m, skip_bad=True)
    assert [e.id for e in kept] == ["x", "y", "z"] and kept.skipped == 1 and f"{m}:3:" in kept.errors[0]


def test_missing_manifest_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_manifest(tmp_path / "nope.jsonl")


def _longspeech(root: Path, rows: list, task: str = "ASR") -> Path:
    _tone(root / "LongSpeech_p1" / "wavs" / "part_00" / "000001.wav", 1.5)
    folder = root / "LongSpeechQA" / task
    folder.mkdir(parents=True, exist_ok=True)
    return _jsonl(folder / "test.jsonl", rows)


def _chat(prompt: str, answer: str, audio: str = "LongSpeech_p1/wavs/part_00/000001.wav", **kw) -> dict:
    return dict(messages=[{"role": "user", "audio": audio, "content": prompt},
                          {"role": "assistant", "content": answer}], **kw)


def test_longspeech_loader(tmp_path):
    _longspeech(tmp_path, [_chat("Detect the language and recognize the speech: <|en|>", "hello world",
                                 task="ASR", language="en"),
                           _chat("Transcribe.", "你好", task="ASR", language="zh")])
    ex = load_longspeech(tmp_path, task="ASR")
    assert [e.metric for e in ex] == ["wer", "cer"] and ex[0].task == "asr_long"
    assert ex[0].audio == (tmp_path / "LongSpeech_p1/wavs/part_00/000001.wav").resolve()
    assert ex[0].prompt.startswith("Detect the language") and ex[0].answer == "hello world"
    assert ex[0].duration == pytest.approx(1.5)
    summary = _longspeech(tmp_path, [_chat("Summarize.", "A talk.")], task="summary")
    ex = load_longspeech(summary)  # the task comes from the folder name
    assert ex[0].task == "summary" and ex[0].metric == "rouge"
    assert load_examples(tmp_path, task="summary")[0].answer == "A talk."


@pytest.mark.parametrize(
    "bad, message",
    [
        (_chat("Transcribe.", "x", audio="LongSpeech_p9/none.wav"), "audio file not found"),
        (_chat("Transcribe.", "x", task="Juggling"), "unknown task 'Juggling'"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}, "missing field: audio"),
        ({"task": "ASR"}, "missing field: messages"),
        ("{not json", "malformed JSON"),
    ],
)
def test_longspeech_bad_rows(tmp_path, bad, message):
    f = _longspeech(tmp_path, [_chat("Transcribe.", "ok"), bad])
    with pytest.raises(DataError) as err:
        load_longspeech(tmp_path, task="ASR")
    assert f"{f}:2:" in str(err.value) and message in str(err.value)
    assert load_longspeech(tmp_path, task="ASR", skip_bad=True).skipped == 1


def test_audiomarathon_list_and_desed_forms(tmp_path):
    _tone(tmp_path / "audio" / "spk1.wav", 1.0)
    _tone(tmp_path / "audio" / "sed1.flac", 1.0)
    records = [
        {"path": "audio/spk1.wav", "question": "What is the speaker's gender?", "choice_a": "male",
         "choice_b": "female", "choice_c": "", "choice_d": "", "answer_gt": "B", "uniq_id": 7},
        {"path": "audio/spk1.wav", "question": "Gender?", "choice_a": "male", "choice_b": "female",
         "answer_gt": "male"},
    ]
    (tmp_path / "vox.json").write_text(json.dumps(records, indent=2))
    ex = load_audiomarathon(tmp_path / "vox.json", "SGR", audio_root=tmp_path)  # published: <folder>/wav/
    assert [e.answer for e in ex] == ["B", "A"] and ex[0].choices == ["male", "female"]
    assert ex[0].task == "speaker_gender" and ex[0].metric == "f1" and ex[0].id == "audiomarathon-SGR-7"
    desed = {"tasks": [{"path": "audio/sed1.flac", "task_type": "detection", "question": "Which sound occurs?",
                        "choices": {"A": "dog", "B": "alarm", "C": "speech", "D": "dishes"}, "answer_gt": "C"}]}
    (tmp_path / "desed.json").write_text(json.dumps(desed, indent=2))
    ex = load_examples(tmp_path / "desed.json", task="SED")
    assert ex[0].answer_text() == "speech" and ex[0].task == "sound_events"
    assert ex[0].metadata["task_type"] == "detection"


@pytest.mark.parametrize("form", ["list", "desed"])
def test_audiomarathon_bad_record_line(tmp_path, form):
    _tone(tmp_path / "a.wav", 1.0)
    good = {"path": "a.wav", "question": "Q?", "choice_a": "x", "choice_b": "y", "answer_gt": "A"}
    bad = {"path": "gone.wav", "question": "Q?", "choice_a": "x", "choice_b": "y", "answer_gt": "A"}
    doc = [good, bad] if form == "list" else {"version": 1, "tasks": [good, bad]}
    f = tmp_path / "t.json"
    f.write_text(json.dumps(doc, indent=2))
    text = f.read_text().splitlines()
    line = [i for i, t in enumerate(text, 1) if "gone.wav" in t][0] - 1  # the record's opening brace
    with pytest.raises(DataError) as err:
        load_audiomarathon(f, "SER")
    assert f"{f}:{line}:" in str(err.value) and "audio file not found" in str(err.value)
    assert load_audiomarathon(f, "SER", skip_bad=True).skipped == 1
    f.write_text('[{"path": "a.wav",\n "question": }]')
    with pytest.raises(DataError, match=rf"{f}:2: malformed JSON"):
        load_audiomarathon(f, "SER")
    with pytest.raises(DataError, match="unknown AudioMarathon task"):
        load_audiomarathon(f, "XYZ")


def test_spiral_loader(tmp_path):
    _tone(tmp_path / "clips" / "s1.flac", 2.0)
    f = _jsonl(tmp_path / "spiral.jsonl", [
        {"id": "s1", "audio": "clips/s1.flac", "question": "When does the flight leave?",
         "choices": ["at nine", "at ten", "at noon", "at six"], "answer": "at noon", "metadata": {"depth": 0.3}},
        {"audio_path": "clips/s1.flac", "question": "Q?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
         "answer": 3},
        {"audio": "clips/s1.flac", "question": "Q?", "answer": "A"},
    ])
    with pytest.raises(DataError, match=rf"{f}:3: missing field\(s\): choices"):
        load_spiral(f)
    ex = load_spiral(f, skip_bad=True)
    assert [e.answer for e in ex] == ["C", "D"] and ex.skipped == 1
    assert ex[0].task == "sir" and ex[0].metadata["depth"] == 0.3 and ex[1].id == "spiral-2"
    assert load_examples(f, skip_bad=True)[0].id == "s1"


def test_cli_check_data_exit_codes(tmp_path, capsys):
    _tone(tmp_path / "a.flac", 2.0)
    m = _jsonl(tmp_path / "m.jsonl", [_row(), _row(id="y", offset=9.0)])
    assert main(["check-data", str(m)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{m}:2:" in err and "past the end" in err
    assert main(["check-data", str(m), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "1 examples" in captured.out and "skipped 1 bad row(s)" in captured.err
    assert main(["check-data", str(tmp_path / "none.jsonl")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_cli_synth_writes_and_refuses_bad_arguments(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["synth", "--out", str(out), "--seed", "1", "--split", "validation", "--durations", "30s",
                 "--tasks", "speaker_count", "summary"]) == 0
    assert "1 recordings" in capsys.readouterr().out
    rows = [json.loads(x) for x in (out / "validation.jsonl").read_text().splitlines()]
    assert {r["task"] for r in rows} == {"speaker_count", "summary"}
    assert main(["check-data", str(out / "validation.jsonl")]) == 0
    assert main(["synth", "--out", str(out), "--seed", "1", "--durations", "half an hour"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read duration")
    assert main(["synth", "--out", str(out), "--seed", "1", "--hours", "-2"]) == 2


@pytest.mark.parametrize("field,value", [("duration", float("nan")), ("duration", float("inf")),
                                         ("offset", float("nan")), ("offset", float("-inf"))])
def test_non_finite_offsets_and_durations_are_refused(tmp_path, field, value):
    # json.dumps writes NaN / Infinity literals and json.loads reads them back; NaN passes every range check.
    _tone(tmp_path / "a.flac", 2.0)
    m = _jsonl(tmp_path / "m.jsonl", [_row(), _row(id="y", **{field: value}), _row(id="z")])
    with pytest.raises(DataError, match=f"{m}:2: {field} must be a finite number"):
        load_examples(m)
    kept = load_examples(m, skip_bad=True)
    assert [e.id for e in kept] == ["x", "z"] and kept.skipped == 1


@pytest.mark.parametrize("line", [1, 2])
def test_non_utf8_bytes_are_a_data_error_naming_file_and_line(tmp_path, line):
    _tone(tmp_path / "a.flac", 2.0)
    rows = [json.dumps(_row(id=i)).encode() for i in "xyz"]
    rows[line - 1] = rows[line - 1].replace(b"Where?", b"Wh\xffere?")
    m = tmp_path / "m.jsonl"
    m.write_bytes(b"\n".join(rows) + b"\n")
    with pytest.raises(DataError, match=f"{m}:{line}: not UTF-8 text"):
        load_examples(m)
    kept = load_examples(m, skip_bad=True)
    assert len(kept) == 2 and kept.skipped == 1
    records = tmp_path / "am.json"
    records.write_bytes(b'[\n  {"path": "a.flac", "question": "Who?",\n   "answer_gt": "A", "note": "\xff"}\n]\n')
    with pytest.raises(DataError, match=f"{records}:3: not UTF-8 text"):
        load_audiomarathon(records, "SGR")

"""Hostile inputs through the real command line (in-process): each must end in exit code 2, exactly one line
`error: ...` on stderr naming the input and the reason, no traceback, and nothing new where output would go."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from speechpress.cli import main

SR = 16000


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One folder of hostile inputs beside good ones; every case runs in it, so relative paths are relative to it."""
    root = tmp_path_factory.mktemp("hostile")
    assert main(["init-model", "--out", str(root / "model")]) == 0
    t = np.arange(3 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(root / "talk.wav", tone, SR)
    (root / "empty.wav").write_bytes(b"")
    (root / "notes.wav").write_text("this is not audio at all\n" * 20)
    nan = tone.copy()
    nan[1234] = np.nan
    sf.write(root / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(root / "full.flac", tone, SR)
    (root / "trunc.flac").write_bytes((root / "full.flac").read_bytes()[: (root / "full.flac").stat().st_size // 2])
    (root / "noise.mp3").write_bytes(np.random.RandomState(0).bytes(5000))
    (root / "not-a-model").mkdir()
    (root / "runs").mkdir()  # the first folder of a mistyped model path such as runs/tiny
    (root / "file").write_text("a regular file\n")
    row = dict(id="a", audio="talk.wav", offset=0.0, duration=2.0, task="asr_short", prompt="Transcribe.",
               answer="la", metric="wer")
    (root / "m.jsonl").write_text(json.dumps(row) + "\n")
    (root / "nan.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(dict(row, id="b", duration=float("nan"))) + "\n")
    (root / "bytes.jsonl").write_bytes(json.dumps(row).encode() + b'\n{"id": "b\xff"}\n')
    (root / "train.yaml").write_text("recipe: asr\noutput_dir: out\ndata: {train: [m.jsonl]}\n")
    return root


CASES = {
    # already refused before these fixes
    "missing audio": (["info", "missing.wav"], "missing.wav: no such file"),
    "empty audio": (["info", "empty.wav"], "empty.wav: empty file"),
    "text named .wav": (["info", "notes.wav"], "notes.wav: cannot decode as audio"),
    "NaN samples": (["ask", "nan.wav", "Who?", "--model", "model"], "nan.wav: non-finite sample"),
    "truncated FLAC": (["info", "trunc.flac"], "trunc.flac: corrupt or truncated audio after"),
    "unknown press": (["info", "talk.wav", "--press", "squeeze"], "unknown press 'squeeze'"),
    "ratio below 1": (["info", "talk.wav", "--press", "avgpool", "--ratio", "0.5"], "must be >= 1"),
    "directory not a model": (["ask", "talk.wav", "Who?", "--model", "not-a-model"], "not-a-model: not a speechpress model"),
    "unknown benchmark": (["eval", "--model", "model", "--benchmark", "nope.jsonl", "--out", "out"], "unknown benchmark"),
    # 2: an output folder that is a regular file, or under one
    "init-model into a file": (["init-model", "--out", "file"], "file: exists and is not a directory"),
    "synth under a file": (["synth", "--out", "file/corpus", "--seed", "0", "--durations", "5"], "file/corpus: cannot be created"),
    "eval into a file": (["eval", "--model", "model", "--benchmark", "m.jsonl", "--out", "file"], "file: exists and is not"),
    "train into a file": (["train", "train.yaml", "output_dir=file/run"], "file/run: cannot be created"),
    "report into a file": (["report", "runs", "--out", "file"], "file: exists and is not a directory"),
    # 3: a question longer than the LLM's positions (the tiny model has 131,072)
    "140,000-character question": (["ask", "talk.wav", "x" * 140_000, "--model", "model"], "max_position_embeddings"),
    # 4: random bytes named .mp3
    "random bytes named .mp3": (["info", "noise.mp3"], "noise.mp3: cannot decode as audio (decoder: "),
    # 5: a NaN duration
    "NaN duration, check-data": (["check-data", "nan.jsonl"], "nan.jsonl:2: duration must be a finite number"),
    "NaN duration, eval": (["eval", "--model", "model", "--benchmark", "nan.jsonl", "--out", "out"], "nan.jsonl:2: duration"),
    # 6: bytes that are not UTF-8
    "not UTF-8, check-data": (["check-data", "bytes.jsonl"], "bytes.jsonl:2: not UTF-8 text"),
    "not UTF-8, eval": (["eval", "--model", "model", "--benchmark", "bytes.jsonl", "--out", "out"], "bytes.jsonl:2: not UTF-8"),
    # 7: a NaN learning rate
    "train.lr=.nan": (["train", "train.yaml", "train.lr=.nan"], "train.lr: expected a finite number"),
    # 8: a mistyped relative model path whose first folder exists here
    "mistyped model path": (["ask", "talk.wav", "Who?", "--model", "runs/tiny"], "runs/tiny: no such model directory"),
    # 9: an empty name in a press chain
    "empty press in a chain": (["info", "talk.wav", "--press", "avgpool:2+"], "empty press name in chain 'avgpool:2+'"),
    # 10: numbers outside their limits
    "profile 1e12 minutes": (["profile", "--model-config", "tiny", "--minutes", "1e12"], "--minutes must be at most"),
    "1 ms chunks": (["transcribe", "talk.wav", "--model", "model", "--chunk-seconds", "0.001"], "--chunk-seconds must be"),
    "top-p 5": (["ask", "talk.wav", "Who?", "--model", "model", "--top-p", "5"], "--top-p must be at most 1"),
}


def _tree(root):
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_error_line_exit_2_and_nothing_written(case, root, monkeypatch, capfd):
    argv, reason = CASES[case]
    monkeypatch.chdir(root)
    before = _tree(root)
    capfd.readouterr()
    assert main(argv) == 2
    err = capfd.readouterr().err  # file descriptor 2 too: a decoder's own notes count as lines
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert reason in err, err
    assert _tree(root) == before  # no output folder, no temporary file, no half-written result

"""The Hugging Face `datasets` reader: datasets built here (an Audio column holding real audio), saved as parquet
and with save_to_disk, read back through `hf:` with a column spec; exact examples, exact samples, typed errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

datasets = pytest.importorskip("datasets")

from helpers import speech  # noqa: E402

from speechpress.audio import load_audio  # noqa: E402
from speechpress.cli import main  # noqa: E402
from speechpress.data.hf import HFColumns, iter_hf, load_hf, open_dataset, parse_spec  # noqa: E402
from speechpress.data.loaders import detect_format, load_examples  # noqa: E402
from speechpress.data.schema import Example  # noqa: E402
from speechpress.errors import DataError  # noqa: E402

SR = 16000


def _sine(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _encoded(samples: np.ndarray, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, SR, format=fmt, subtype=subtype)
    return buf.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    return sf.read(io.BytesIO(data), dtype="float32")[0]


def _audio_dataset(columns: dict, audio: list[bytes], names: list[str]):
    """A dataset whose `audio` column is a datasets.Audio feature holding the encoded files (as the hub's parquet
    files hold them); built from a bytes/path struct, since encoding arrays needs torchcodec."""
    cols = dict(columns, audio=[{"bytes": b, "path": n} for b, n in zip(audio, names)])
    return datasets.Dataset.from_dict(cols).cast_column("audio", datasets.Audio())


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "audio-cache"
    monkeypatch.setenv("SPEECHPRESS_AUDIO_CACHE", str(folder))
    return folder


def _qa_dataset():
    waves = [_sine(1.0, 440), speech(1.5, seed=3)]
    files = [_encoded(waves[0]), _encoded(waves[1], "FLAC")]
    ds = _audio_dataset({
        "uid": ["q-1", "q-2"],
        "question": ["Which tone is it?", "Transcribe the speech."],
        "options": [["low", "middle", "high"], None],
        "label": ["high", "the quarterly meeting"],
        "kind": ["sir", "asr_long"],
        "speaker": ["s1", "s2"],
    }, files, ["tone.wav", "speech.flac"])
    return ds, waves, files


SPEC = "question=question,answer=label,choices=options,task=kind,id=uid"


def test_parquet_folder_streams_and_maps_exact_examples(tmp_path, cache):
    ds, waves, files = _qa_dataset()
    folder = tmp_path / "release"
    folder.mkdir()
    ds.to_parquet(str(folder / "test.parquet"))

    opened, columns, base, label = open_dataset(str(folder), split="test")
    assert isinstance(opened, datasets.IterableDataset)  # streamed, not loaded
    assert columns == ["uid", "question", "options", "label", "kind", "speaker", "audio"]
    assert detect_format(folder) == "hf"

    examples = load_hf(f"{folder}#{SPEC}")
    assert len(examples) == 2 and not examples.skipped
    paths = [e.audio for e in examples]
    assert all(p.parent == cache.resolve() for p in paths)
    assert [p.suffix for p in paths] == [".wav", ".flac"]
    assert paths[0].read_bytes() == files[0] and paths[1].read_bytes() == files[1]  # stored unchanged
    assert examples[0] == Example("q-1", paths[0], 0.0, 1.0, "sir", "Which tone is it?", ["low", "middle", "high"],
                                  "C", "accuracy", {"speaker": "s1", "source": "hf", "dataset": "release",
                                                    "split": "test", "row": 0})
    assert examples[1] == Example("q-2", paths[1], 0.0, 1.5, "asr_long", "Transcribe the speech.", None,
                                  "the quarterly meeting", "wer", {"speaker": "s2", "source": "hf",
                                                                   "dataset": "release", "split": "test", "row": 1})
    # the audio the model gets is the dataset's audio, sample for sample
    for example, data in zip(examples, files):
        np.testing.assert_array_equal(load_audio(example.audio).samples, _decoded(data))
    np.testing.assert_allclose(load_audio(paths[0]).samples, waves[0], atol=1 / 32768)


def test_save_to_disk_with_splits_and_the_speechpress_spec(tmp_path, cache):
    wave = speech(3.0, seed=1)
    data = _encoded(wave, "FLAC")
    rows = {
        "id": ["a-asr", "a-gender"], "task": ["asr_short", "speaker_gender"],
        "prompt": ["Transcribe the speech.", "What is the gender of Maria?"], "offset": [0.5, 0.0],
        "duration": [1.25, None], "choices": [None, ["female", "male"]], "answer": ["the train", "A"],
        "metric": ["wer", "accuracy"], "metadata": [json.dumps({"utterance": 3}), None],
    }
    test = _audio_dataset(rows, [data, data], ["rec.flac", "rec.flac"])
    train = _audio_dataset({k: v[:1] for k, v in rows.items()}, [data], ["rec.flac"])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "disk"))

    examples = load_examples(tmp_path / "disk#speechpress", format="hf", split="test")
    assert len(examples) == 2
    audio = examples[0].audio
    assert examples[1].audio == audio and len(list(cache.iterdir())) == 1  # one file per distinct content
    assert examples[0] == Example("a-asr", audio, 0.5, 1.25, "asr_short", "Transcribe the speech.", None,
                                  "the train", "wer", {"utterance": 3, "source": "hf", "dataset": "disk",
                                                       "split": "test", "row": 0})
    assert examples[1] == Example("a-gender", audio, 0.0, 3.0, "speaker_gender", "What is the gender of Maria?",
                                  ["female", "male"], "A", "accuracy", {"source": "hf", "dataset": "disk",
                                                                        "split": "test", "row": 1})
    np.testing.assert_array_equal(load_audio(audio).samples, _decoded(data))
    assert [e.id for e in load_hf(tmp_path / "disk", "speechpress", split="train")] == ["a-asr"]
    with pytest.raises(DataError, match=r"no split 'validation' \(splits: train, test\)"):
        load_hf(tmp_path / "disk", "speechpress", split="validation")

    # a single saved Dataset, read lazily through iter_hf (a generator)
    test.save_to_disk(str(tmp_path / "one"))
    gen = iter_hf(tmp_path / "one", "speechpress")
    assert next(gen).id == "a-asr"


def test_array_column_is_cached_as_exact_float_samples(tmp_path, cache):
    wave = speech(1.0, seed=2) * 0.5 + 1e-7  # values no 16-bit file could hold
    ds = datasets.Dataset.from_dict({"audio": [{"array": wave.tolist(), "sampling_rate": SR}],
                                     "text": ["hello"]})
    ds.to_parquet(str(tmp_path / "arr.parquet"))
    (example,) = load_hf(tmp_path / "arr.parquet", "question=,answer=text,default_task=asr_long,"
                         "default_question=Transcribe the speech.")
    assert example.prompt == "Transcribe the speech." and example.answer == "hello" and example.metric == "wer"
    assert example.id == "arr-test-0" and example.duration == 1.0
    stored, rate = sf.read(str(example.audio), dtype="float32")
    assert rate == SR
    np.testing.assert_array_equal(stored, wave.astype(np.float32))


def test_path_column_yaml_spec_and_option_columns(tmp_path, cache):
    folder = tmp_path / "release"
    (folder / "wav").mkdir(parents=True)
    sf.write(str(folder / "wav" / "a.wav"), _sine(2.0), SR)
    pd = pytest.importorskip("pandas")
    pd.DataFrame({"file": ["wav/a.wav"], "q": ["Which genre?"], "choice_a": ["jazz"], "choice_b": ["rock"],
                  "choice_c": ["pop"], "choice_d": [""], "answer_gt": ["Rock"], "code": ["MC"]}
                 ).to_parquet(folder / "test.parquet")
    spec = tmp_path / "mc.yaml"
    spec.write_text("audio: file\nquestion: q\nanswer: answer_gt\nchoices: [choice_a, choice_b, choice_c, choice_d]\n"
                    "task: code\ntask_names: {MC: music_genre}\nscore_metric: f1_macro_options\nkeep: []\n")
    (example,) = load_hf(f"{folder}#{spec}")
    assert example.audio == (folder / "wav" / "a.wav").resolve()  # a path is used where it is, not copied
    assert not cache.exists()
    assert (example.task, example.choices, example.metric) == ("music_genre", ["jazz", "rock", "pop"], "f1")
    assert example.answer == "B"  # option text in any case -> its letter
    assert example.metadata == {"source": "hf", "dataset": "release", "split": "test", "row": 0,
                                "score_metric": "f1_macro_options"}


def test_missing_column_is_a_data_error_before_any_row(tmp_path, cache):
    ds, _, _ = _qa_dataset()
    ds.to_parquet(str(tmp_path / "test.parquet"))
    with pytest.raises(DataError, match=r"column\(s\) 'answer' \(answer\) of spec 'generic' not in the dataset "
                                        r"\(columns: uid, question, options, label, kind, speaker, audio\)"):
        load_hf(tmp_path, "default_task=sir")
    assert not cache.exists()
    with pytest.raises(DataError, match=r"'nope' \(task\)"):
        load_hf(tmp_path, f"{SPEC},task=nope")


def test_malformed_rows_name_the_dataset_and_row(tmp_path, cache):
    good = _encoded(_sine(1.0))
    ds = _audio_dataset({"question": ["Which?", "Which?", "Which?", "Which?"],
                         "options": [["a", "b"], ["a", "b"], ["a", "b"], ["a"]],
                         "answer": ["A", "C", "B", "A"]},
                        [good, good, b"RIFF but not audio at all", good], ["a.wav"] * 4)
    ds.to_parquet(str(tmp_path / "bad" / "test.parquet"))
    src = f"{tmp_path / 'bad'}#choices=options,default_task=sir"
    with pytest.raises(DataError, match=r"bad \[test\] row 1: answer 'C' is not one of the 2 choices"):
        load_hf(src)
    examples = load_hf(src, skip_bad=True)
    assert [e.metadata["row"] for e in examples] == [0]
    assert len(examples.errors) == 3
    assert "row 2:" in examples.errors[1] and "cannot decode as audio" in examples.errors[1]
    assert "row 3: choices must hold at least 2 options" in examples.errors[2]


def test_hub_id_offline_is_a_clear_data_error(monkeypatch, cache):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match=r"someone/long-audio-qa: not a local folder, and the Hugging Face Hub is "
                                        r"offline .*hf download someone/long-audio-qa --repo-type dataset"):
        load_hf("someone/long-audio-qa#default_task=sir")
    with pytest.raises(DataError, match="no such file or folder, and not a hub id"):
        load_hf("/no/such/folder")


def test_spec_strings():
    spec = parse_spec("speechpress,question=text,choices=a+b+c")
    assert spec.name == "speechpress" and spec.question == "text" and spec.choices == ("a", "b", "c")
    assert spec.id == "id" and spec.keep == ()
    assert parse_spec(None) == HFColumns()
    with pytest.raises(DataError, match="unknown key 'colour'"):
        parse_spec("colour=audio")
    with pytest.raises(DataError, match="unknown task 'karaoke'"):
        parse_spec("default_task=karaoke")
    with pytest.raises(DataError, match="not a shipped spec"):
        parse_spec("longspeech")


def test_eval_and_check_data_read_hf(tmp_path, cache, capsys):
    from speechpress.evaluate.benchmark import resolve_benchmark

    ds, _, _ = _qa_dataset()
    ds.to_parquet(str(tmp_path / "rel" / "test.parquet"))
    bench = resolve_benchmark(f"hf:{tmp_path / 'rel'}#{SPEC}", task="sir")
    assert bench.format == "hf" and [e.id for e in bench.examples] == ["q-1"]
    with pytest.MonkeyPatch.context() as mp:  # a relative PATH#SPEC (or a hub id) is recorded as given, not joined onto the cwd
        mp.chdir(tmp_path)
        assert resolve_benchmark(f"hf:rel#{SPEC}", task="sir").source == f"rel#{SPEC}"
    assert main(["check-data", f"{tmp_path / 'rel'}#{SPEC}", "--format", "hf"]) == 0
    assert "2 examples, 2 audio files" in capsys.readouterr().out

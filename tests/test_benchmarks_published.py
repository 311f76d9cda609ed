"""Benchmarks in their published layouts (file names, nesting, field names and types as the official scripts read
them: github DabDans/AudioMarathon src/Qwen_2.5_Omni/Others, LongSpeech's LongSpeechQA/<task>/test.jsonl), loaded
as-is and scored with each benchmark's own metric on known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechpress.data.loaders import load_audiomarathon, load_examples, load_longspeech
from speechpress.errors import DataError
from speechpress.evaluate.scoring import score_rows, scoring_metric

SR = 16000


def _tone(path: Path, seconds: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    return path


def _score(examples, predictions) -> dict:
    rows = [dict(id=e.id, task=e.task, metric=e.metric, score_metric=scoring_metric(e), choices=e.choices,
                 reference=e.answer, prediction=p) for e, p in zip(examples, predictions)]
    metrics, unscored, notes = score_rows(rows)
    assert not unscored and not any("not implemented" in n for n in notes)
    (task,) = metrics["per_task"]
    (result,) = metrics["per_task"][task].values()
    return result


def _meta(folder: Path, name: str, records: list, wav: bool) -> Path:
    for r in records:
        _tone(folder / ("wav" if wav else "") / (r.get("path") or r.get("audio_path")))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(records, indent=2, ensure_ascii=False))
    return folder / name


# --------------------------------------------------------------------------------------------- AudioMarathon
def test_gtzan_meta_with_audio_under_wav_macro_f1_over_a_to_d(tmp_path):
    recs = [dict(path=f"blues/{i}.wav", question="What is the genre of this music?", choice_a="Blues",
                 choice_b="Classical", choice_c="Rock", choice_d="Jazz", answer_gt=g) for i, g in enumerate("ABCD")]
    f = _meta(tmp_path, "music_genre_classification_meta.json", recs, wav=True)
    ex = load_examples(f)  # format and task from the published file name; audio from <folder>/wav/<path>
    assert [e.answer for e in ex] == list("ABCD") and ex[0].audio == (tmp_path / "wav/blues/0.wav").resolve()
    r = _score(ex, ["A", "B", "B", "I am not sure"])
    # kept rows (unparsed dropped, as the script does): A/A, B/B, C/B; labels A..D: F1 = 1, 2/3, 0, 0 -> 5/12
    assert r["score"] == pytest.approx(5 / 12) and r["unparsed"] == 1 and r["accuracy"] == 0.5


def test_voxceleb_gender_text_answers_any_case_weighted_f1(tmp_path):
    recs = [dict(path=f"id{i}/a.wav", question="What is the gender?", choice_a="male", choice_b="female",
                 answer_gt=g, speaker_id_original=f"id{i}") for i, g in enumerate(["Male", "female", "Female", "FEMALE"])]
    _meta(tmp_path, "gender_id_task_meta.json", recs, wav=True)
    ex = load_audiomarathon(tmp_path, "SGR")  # the folder: its gender_id_task_meta.json
    assert [e.answer for e in ex] == ["A", "B", "B", "B"]
    r = _score(ex, ["a", "a", "B", "female"])
    # true m f f f, pred m m f f: male F1 2/3 (support 1), female 4/5 (support 3) -> weighted (2/3 + 12/5) / 4
    assert r["score"] == pytest.approx(23 / 30) and r["average"] == "weighted"


def test_voxceleb_age_has_five_options_and_text_answers(tmp_path):
    opts = dict(choice_a="Young Adult (18-25)", choice_b="Early Career (26-33)", choice_c="Mid Career (34-40)",
                choice_d="Senior (41-55)", choice_e="Elder (56+)")
    recs = [dict(path=f"id{i}.wav", question="Age group?", answer_gt=g, speaker_id_original=f"id{i}",
                 speaker_age=60, **opts) for i, g in enumerate(["Elder (56+)", "Young Adult (18-25)"])]
    _meta(tmp_path, "age_classification_task_meta.json", recs, wav=True)
    ex = load_audiomarathon(tmp_path / "age_classification_task_meta.json", "SAR")
    assert [e.answer for e in ex] == ["E", "A"] and len(ex[0].choices) == 5
    r = _score(ex, ["E", "The answer is E"])
    # labels = the gold classes (elder, young adult); elder F1 2/3, young adult 0 -> macro 1/3
    assert r["score"] == pytest.approx(1 / 3)


def test_race_benchmark_options_and_answer(tmp_path):
    recs = [dict(audio_path=f"high/{i}.wav", question="Why?", options=["a", "b", "c", "d"], answer=g,
                 article_id=i) for i, g in enumerate("AB")]
    _meta(tmp_path, "race_benchmark.json", recs, wav=False)
    ex = load_examples(tmp_path / "race_benchmark.json")
    assert [e.answer for e in ex] == ["A", "B"] and ex[0].task == "content_reasoning"
    r = _score(ex, ["A", "B"])
    assert r["score"] == pytest.approx(0.5)  # A and B perfect, C and D absent but listed -> (1 + 1 + 0 + 0) / 4


def test_vesus_drops_what_the_official_script_drops(tmp_path):
    base = dict(question="Emotion?", choice_a="happy", choice_b="sad", choice_c="angry", choice_d="neutral")
    recs = [dict(path="p2/a.wav", person_id=2, emotion_label="Happy", answer_gt="A", **base),
            dict(path="p10/a.wav", person_id="10", emotion_label="happy", answer_gt="A", **base),
            dict(path="p3/a.wav", person_id=3, emotion_label="happy", answer_gt="A", **base),
            dict(path="p2/b.wav", person_id=2, emotion_label="sad", answer_gt="B", **base)]
    _meta(tmp_path, "audio_emotion_dataset.json", recs, wav=False)
    ex = load_audiomarathon(tmp_path, "ER")
    assert [e.metadata["person_id"] for e in ex] == [3, 2]
    assert _score(ex, ["A", "A"])["score"] == pytest.approx(1 / 3)  # present labels A, B: 2/3 and 0 -> 1/3


def test_desed_tasks_object(tmp_path):
    doc = {"tasks": [{"path": "s1.wav", "task_type": "detection", "question": "Which sound?",
                      "choices": {"A": "dog", "B": "alarm", "C": "speech", "D": "dishes"}, "answer_gt": "C"}]}
    _tone(tmp_path / "s1.wav")
    (tmp_path / "desed_sound_event_detection_task.json").write_text(json.dumps(doc, indent=2))
    ex = load_examples(tmp_path / "desed_sound_event_detection_task.json")
    assert ex[0].task == "sound_events" and _score(ex, ["C"])["score"] == 1.0


def test_had_real_and_fake_folders(tmp_path):
    for name in ("real/r1.wav", "real/r2.wav", "fake/f1.wav"):
        _tone(tmp_path / "HAD" / name)
    ex = load_examples(tmp_path / "HAD")
    assert [e.answer for e in ex] == ["A", "A", "B"] and ex[0].choices == ["real", "fake"]
    r = _score(ex, ["a", "b", "b"])
    assert r["score"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # real: tp1 fn1 -> 2/3; fake: tp1 fp1 -> 2/3


def test_librispeech_tree_with_trans_txt_mean_utterance_wer(tmp_path):
    chapter = tmp_path / "test-clean" / "1089" / "134686"
    _tone(chapter / "1089-134686-0000.flac")
    _tone(chapter / "1089-134686-0001.flac")
    (chapter / "1089-134686.trans.txt").write_text(
        "1089-134686-0000 HE HOPED THERE WOULD BE STEW\n1089-134686-0001 STUFF IT INTO YOU\n")
    ex = load_audiomarathon(tmp_path, "ASR")
    assert [e.answer for e in ex] == ["HE HOPED THERE WOULD BE STEW", "STUFF IT INTO YOU"]
    r = _score(ex, ["he hoped there would be stew", "stuff it in you"])
    assert r["score"] == pytest.approx((0 + 1 / 4) / 2)  # mean of per-utterance WER, not pooled (1/10)


def test_librispeech_missing_transcript_names_the_file(tmp_path):
    _tone(tmp_path / "test-clean" / "1" / "2" / "1-2-0000.flac")
    (tmp_path / "test-clean" / "1" / "2" / "1-2.trans.txt").write_text("1-2-0001 OTHER\n")
    with pytest.raises(DataError, match=r"1-2\.trans\.txt: no transcript for 1-2-0000\.flac"):
        load_audiomarathon(tmp_path, "ASR")


# -------------------------------------------------------------------------------------------------- LongSpeech
def _ls(root: Path, task: str, rows: list) -> Path:
    _tone(root / "LongSpeech_p1" / "wavs" / "part_00" / "000001.wav")
    folder = root / "LongSpeechQA" / task
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return folder / "test.jsonl"


def _msgs(answer: str, as_string: bool = False):
    m = [{"role": "user", "audio": "LongSpeech_p1/wavs/part_00/000001.wav", "content": "Which?"},
         {"role": "assistant", "content": answer}]
    return json.dumps(m) if as_string else m


def test_longspeech_emotion_strict_and_relaxed(tmp_path):
    _ls(tmp_path, "emotionQA", [dict(messages=_msgs(a, as_string=i == 1), task="emotionQA", language="en")
                                for i, a in enumerate(["Pensive", "Excited", "Calm", "Urgent"])])
    ex = load_longspeech(tmp_path, task="emotionQA")
    r = _score(ex, ["The tone is melancholy.", "hopeful", "I cannot tell", "dramatic"])
    # pensive/melancholy same coarse class; excited/hopeful same polarity only; no label; urgent/dramatic same class
    assert (r["strict_accuracy"], r["relaxed_accuracy"], r["unparsed"]) == (0.5, 0.75, 1)


def test_longspeech_language_detection_partition(tmp_path):
    _ls(tmp_path, "language_detection", [dict(messages=_msgs(a), task="language_detection", language=c)
                                         for a, c in [("English", "en"), ("German", "de"), ("zh", "zh"), ("French", "fr")]])
    ex = load_longspeech(tmp_path, task="language_detection")
    r = _score(ex, ["It is English.", "<|de|>", "Spanish", "no idea"])
    assert (r["detection_accuracy"], r["detection_errors"], r["misunderstanding_rate"]) == (0.5, 0.25, 0.25)


def test_longspeech_bad_messages_string_and_unreadable_reference(tmp_path):
    f = _ls(tmp_path, "emotionQA", [dict(messages="[{not json"), dict(messages=_msgs("purple"))])
    with pytest.raises(DataError, match=rf"{f}:1: messages is a string but not JSON"):
        load_longspeech(tmp_path, task="emotionQA")
    ex = load_longspeech(tmp_path, task="emotionQA", skip_bad=True)
    assert ex.skipped == 2 and f"{f}:2: reference 'purple' names no LongSpeech emotion label" in ex.errors[1]


def test_eval_task_filters_a_manifest(tmp_path):
    from speechpress.evaluate.benchmark import resolve_benchmark

    _tone(tmp_path / "a.wav")
    rows = [dict(id="1", audio="a.wav", task="asr_long", prompt="T", answer="x", metric="wer"),
            dict(id="2", audio="a.wav", task="summary", prompt="S", answer="y", metric="rouge")]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [e.id for e in resolve_benchmark(str(tmp_path / "m.jsonl"), task="summary").examples] == ["2"]
    with pytest.raises(DataError, match="no examples of task 'nope'"):
        resolve_benchmark(str(tmp_path / "m.jsonl"), task="nope")


def test_eval_takes_an_audiomarathon_folder_as_is(tmp_path):
    from speechpress.evaluate.benchmark import resolve_benchmark

    for name in ("real/r1.wav", "fake/f1.wav"):
        _tone(tmp_path / "HAD" / name)
    bench = resolve_benchmark(str(tmp_path / "HAD"))
    assert bench.format == "audiomarathon" and len(bench.examples) == 2

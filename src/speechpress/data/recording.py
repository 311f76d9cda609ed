"""One synthetic recording: a multi-speaker espeak-ng timeline (genre, cast, turns, needles and key points placed at
chosen depths) rendered to FLAC, and its metadata (who said what, when).

Everything follows from (seed, split, recording index): the audio RNG and each task's RNG (``task_rng``, used by
``questions.py``) are separate streams, so asking for fewer tasks never changes the audio or the other tasks'
questions.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechpress.data.grammar import Grammar, Sentence
from speechpress.data.schema import LETTERS, SYNTH_TASKS
from speechpress.data.tts import SAMPLE_RATE, speak
from speechpress.data.voices import SpeakerVoice, draw_voices
from speechpress.data.vocab import SPLITS
from speechpress.io import atomic_path

VERSION = 1  # bump when the same seed should produce different audio or questions
GENRES = ("meeting", "lecture", "news", "conversation")  # the default draw (what every published seed used)
# Alignment data, only when asked for (synth --genres): dictation (names, places, numbers no template predicts) and
# lexicon (lists of the LLM's single-token words).
ALL_GENRES = GENRES + ("dictation", "lexicon")
SIR_MIN_SECONDS = 90.0  # SPIRAL-style needles need at least ~90 s of other speech around them
_CHUNK = 16  # utterances rendered concurrently before they are placed in order


def q(seconds: float) -> float:
    """Times stored to the millisecond, so sidecars and manifests compare exactly."""
    return round(float(seconds), 3)


@dataclass
class _Anchor:
    """An utterance that must start near a chosen time (a needle or a key point)."""

    kind: str
    speaker: int
    sentence: Sentence
    audio: np.ndarray
    target: int  # samples
    info: dict


def _render(text: str, sv: SpeakerVoice) -> np.ndarray:
    """espeak-ng speech trimmed to its voiced part, at the speaker's level, so timestamps are tight."""
    audio = speak(text, sv.voice)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0:
        return np.zeros(0, np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.02 * peak)
    margin = int(0.02 * SAMPLE_RATE)
    audio = audio[max(0, loud[0] - margin): loud[-1] + margin + 1]
    return (audio * (sv.gain / peak)).astype(np.float32)


def _to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def _pause(rng: np.random.Generator, new_turn: bool) -> float:
    if not new_turn:
        return float(rng.uniform(0.15, 0.45))
    return float(rng.uniform(1.2, 2.5)) if rng.random() < 0.1 else float(rng.uniform(0.35, 1.0))


def _cast(rng: np.random.Generator, genre: str, duration: float) -> tuple[int, list[str]]:
    """How many speakers, and their genders; long recordings can afford bigger casts."""
    cap = max(2, int(duration // 12))
    if genre in ("dictation", "lexicon"):  # drawn apart: the dict below draws for every genre, and published seeds keep its draws
        n = int(rng.integers(2, 5))
    else:
        n = {"meeting": int(rng.integers(3, 7)), "lecture": 1 + int(rng.integers(0, 3)),
             "news": 1 + int(rng.integers(1, 4)), "conversation": int(rng.integers(2, 4))}[genre]
    n = min(n, cap)
    return n, ["female" if rng.random() < 0.5 else "male" for _ in range(n)]


def _turns(rng: np.random.Generator, grammar: Grammar, genre: str, names: list[str]):
    """Endless (speaker, sentence, pause) stream: everyone introduces themself first, then genre turn-taking."""
    n = len(names)
    order = [0] + [int(i) + 1 for i in rng.permutation(n - 1)]
    introduced: set[int] = set()
    prev = -1
    turn = 0
    while True:
        if turn < n:
            spk = order[turn]
        elif genre == "lecture":
            spk = 0 if (n == 1 or rng.random() < 0.85 or prev != 0) else int(rng.integers(1, n))
        elif genre == "news":
            spk = 0 if prev != 0 else int(rng.integers(1, n))
        else:
            choices = [i for i in range(n) if i != prev]
            spk = choices[int(rng.integers(len(choices)))]
        turn += 1
        student = genre == "lecture" and spk != 0
        count = 1 if student else {"meeting": (1, 3), "lecture": (2, 5), "news": (1, 4), "conversation": (1, 2),
                                   "dictation": (1, 3), "lexicon": (1, 3)}[genre]
        count = count if isinstance(count, int) else int(rng.integers(count[0], count[1] + 1))
        for j in range(count):
            if spk not in introduced and j == 0:
                introduced.add(spk)
                sentence = grammar.intro(names[spk], lead=spk == 0)
            else:
                sentence = grammar.content(question=student)
            yield spk, sentence, _pause(rng, new_turn=j == 0)
        prev = spk


def recording_id(seed: int, split: str, index: int) -> str:
    return f"{split}-s{seed}-{index:05d}"


def _audio_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([VERSION, seed, SPLITS.index(split), index])


def task_rng(seed: int, split: str, index: int, task: str) -> np.random.Generator:
    return np.random.default_rng([VERSION, seed, SPLITS.index(split), index, 1 + SYNTH_TASKS.index(task)])


def build_recording(seed: int, split: str, index: int, duration: float, flac_path: Path,
                    executor: ThreadPoolExecutor | None = None, progress=None, genres: tuple[str, ...] = GENRES) -> dict:
    """Render one recording to ``flac_path`` (atomically) and return its timeline metadata."""
    rng = _audio_rng(seed, split, index)
    genre = genres[int(rng.integers(len(genres)))]
    grammar = Grammar(rng, split, genre)
    n, genders = _cast(rng, genre, duration)
    voices = draw_voices(rng, split, genders)
    names: list[str] = []
    while len(names) < n:
        first = grammar.pick("female_name" if genders[len(names)] == "female" else "male_name")
        if all(not nm.startswith(first + " ") for nm in names):
            names.append(f"{first} {grammar.pick('surname')}")
    speakers = [dict(id=f"S{i + 1}", name=names[i], **voices[i].as_dict()) for i in range(n)]
    total = int(round(duration * SAMPLE_RATE))
    mapper = executor.map if executor is not None else map

    # Needles and key points are rendered first, then placed when the timeline reaches their target time.
    specs = []
    if duration >= SIR_MIN_SECONDS:
        n_needles = max(1, int(round(duration / 300)))
        depths = (np.sort(rng.choice(11, size=n_needles, replace=False)) / 10.0 if n_needles <= 11
                  else np.linspace(0.0, 1.0, n_needles))
        used: set[int] = set()
        for depth in depths:
            needle = grammar.needle(used)
            used.add(needle.family)
            spk = int(rng.integers(n))
            specs.append(("needle", spk, Sentence(needle.text, needle.question, "needle"),
                          dict(depth=float(depth), question=needle.question, choices=list(needle.choices),
                               answer=LETTERS[needle.answer], family=needle.family)))
    n_keys = 1 if duration < 60 else 2 if duration < 180 else 3
    for k in range(n_keys):
        specs.append(("key", 0, grammar.key(), dict(fraction=(k + 1) / (n_keys + 1))))
    rendered = list(mapper(lambda s: _render(s[2].text, voices[s[1]]), specs))
    anchors = []
    for (kind, spk, sentence, info), audio in zip(specs, rendered):
        room = max(0, total - len(audio))
        frac = info["depth"] if kind == "needle" else info["fraction"]
        anchors.append(_Anchor(kind, spk, sentence, audio, int(round(frac * room)), info))
    anchors.sort(key=lambda a: a.target)

    stream = _turns(rng, grammar, genre, names)
    utterances: list[dict] = []
    needles: list[dict] = []
    t = 0
    misses = 0
    with atomic_path(flac_path) as tmp, sf.SoundFile(tmp, "w", SAMPLE_RATE, 1, "PCM_16", format="FLAC") as out:

        def place(spk: int, sentence: Sentence, audio: np.ndarray, pause: int) -> dict:
            nonlocal t
            out.write(np.zeros(pause, np.int16))
            out.write(_to_pcm16(audio))
            start = t + pause
            t = start + len(audio)
            if progress is not None:
                progress.update((pause + len(audio)) / SAMPLE_RATE)
            u = dict(start=q(start / SAMPLE_RATE), end=q(t / SAMPLE_RATE), speaker=speakers[spk]["id"],
                     text=sentence.text, kind=sentence.kind, gist=sentence.gist)
            utterances.append(u)
            return u

        while anchors or (total - t >= SAMPLE_RATE and misses < 12):
            chunk = [next(stream) for _ in range(_CHUNK)]
            audios = list(mapper(lambda c: _render(c[1].text, voices[c[0]]), chunk))
            for (spk, sentence, pause_s), audio in zip(chunk, audios):
                pause = int(round(pause_s * SAMPLE_RATE))
                while anchors and t + pause + len(audio) > anchors[0].target:
                    a = anchors.pop(0)
                    gap = min(int(round(_pause(rng, True) * SAMPLE_RATE)), max(0, a.target - t))
                    u = place(a.speaker, a.sentence, a.audio, gap)
                    if a.kind == "needle":
                        needles.append(dict(a.info, target_start=q(a.target / SAMPLE_RATE), start=u["start"],
                                            end=u["end"], speaker=u["speaker"], text=u["text"]))
                if len(audio) == 0 or t + pause + len(audio) > total:
                    misses += 1
                    continue
                place(spk, sentence, audio, pause)
                if not anchors and (total - t < SAMPLE_RATE or misses >= 12):
                    break
        out.write(np.zeros(total - t, np.int16))
        if progress is not None:
            progress.update((total - t) / SAMPLE_RATE)

    keys = [u["gist"] for u in utterances if u["kind"] == "key"]
    present = sorted({u["speaker"] for u in utterances}, key=lambda s: int(s[1:]))
    describe = {"meeting": f"A meeting of {_count_word(len(present))} colleagues",
                "lecture": "A lecture" + (" with questions from the audience" if len(present) > 1 else ""),
                "news": f"A news bulletin with {_count_word(len(present))} presenters",
                "conversation": f"A conversation between {_count_word(len(present))} friends",
                "dictation": f"Notes read by {_count_word(len(present))} people",
                "lexicon": f"Word lists read by {_count_word(len(present))} people"}[genre]
    summary = f"{describe} about {grammar.topic()}."
    if keys:
        summary += " Key points: " + "; ".join(keys) + "."
    return dict(id=recording_id(seed, split, index), seed=seed, split=split, index=index, version=VERSION,
                duration=q(total / SAMPLE_RATE), genre=genre, topic=grammar.topic(), summary=summary,
                speakers=speakers, utterances=utterances, needles=needles)


def _count_word(n: int) -> str:
    return ["no", "one", "two", "three", "four", "five", "six", "seven", "eight"][n] if n < 9 else str(n)

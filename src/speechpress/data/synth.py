"""The synthetic long-form corpus: multi-speaker recordings from espeak-ng, and benchmark questions about them.

Everything follows from (seed, split, recording index): the audio RNG and each task's RNG are separate streams,
so asking for fewer tasks never changes the audio or the other tasks' questions. A recording is written as one
FLAC file plus a JSON sidecar (its timeline); both are atomic, so a rerun skips every finished recording and an
interrupted run leaves nothing half-written. The split manifest is rebuilt from the sidecars at the end.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechpress.data.grammar import Grammar, Sentence
from speechpress.data.schema import LETTERS, SYNTH_TASKS, TASKS
from speechpress.data.tts import SAMPLE_RATE, speak
from speechpress.data.voices import RATE_CLASSES, SpeakerVoice, draw_voices
from speechpress.data.vocab import SPLITS, pools_for
from speechpress.errors import ConfigError
from speechpress.io import atomic_path, atomic_write_json, atomic_write_text

VERSION = 1  # bump when the same seed should produce different audio or questions
GENRES = ("meeting", "lecture", "news", "conversation")
SIR_MIN_SECONDS = 90.0  # SPIRAL-style needles need at least ~90 s of other speech around them
_CHUNK = 16  # utterances rendered concurrently before they are placed in order


def _q(seconds: float) -> float:
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
        count = 1 if student else {"meeting": (1, 3), "lecture": (2, 5), "news": (1, 4), "conversation": (1, 2)}[genre]
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


def _task_rng(seed: int, split: str, index: int, task: str) -> np.random.Generator:
    return np.random.default_rng([VERSION, seed, SPLITS.index(split), index, 1 + SYNTH_TASKS.index(task)])


def build_recording(seed: int, split: str, index: int, duration: float, flac_path: Path,
                    executor: ThreadPoolExecutor | None = None, progress=None) -> dict:
    """Render one recording to ``flac_path`` (atomically) and return its timeline metadata."""
    rng = _audio_rng(seed, split, index)
    genre = GENRES[int(rng.integers(len(GENRES)))]
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
            u = dict(start=_q(start / SAMPLE_RATE), end=_q(t / SAMPLE_RATE), speaker=speakers[spk]["id"],
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
                        needles.append(dict(a.info, target_start=_q(a.target / SAMPLE_RATE), start=u["start"],
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
                "conversation": f"A conversation between {_count_word(len(present))} friends"}[genre]
    summary = f"{describe} about {grammar.topic()}."
    if keys:
        summary += " Key points: " + "; ".join(keys) + "."
    return dict(id=recording_id(seed, split, index), seed=seed, split=split, index=index, version=VERSION,
                duration=_q(total / SAMPLE_RATE), genre=genre, topic=grammar.topic(), summary=summary,
                speakers=speakers, utterances=utterances, needles=needles)


def _count_word(n: int) -> str:
    return ["no", "one", "two", "three", "four", "five", "six", "seven", "eight"][n] if n < 9 else str(n)


# --------------------------------------------------------------------------------------------- questions

def _mcq(rng: np.random.Generator, right: str, wrong: list[str], shuffle: bool = True) -> tuple[list[str], str]:
    options = [right] + wrong
    order = rng.permutation(len(options)) if shuffle else np.arange(len(options))
    choices = [options[i] for i in order]
    return choices, LETTERS[choices.index(right)]


def _introduced(rec: dict) -> list[dict]:
    ids = {u["speaker"] for u in rec["utterances"] if u["kind"] == "intro"}
    return [s for s in rec["speakers"] if s["id"] in ids]


def _word_count(text: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE))


def examples_for(rec: dict, audio: str, tasks=SYNTH_TASKS) -> list[dict]:
    """Manifest rows for one recording; ``audio`` is its path relative to the manifest."""
    seed, split, index = rec["seed"], rec["split"], rec["index"]
    utts = rec["utterances"]
    by_id = {s["id"]: s for s in rec["speakers"]}
    base = dict(recording=rec["id"], seed=seed, split=split, genre=rec["genre"], topic=rec["topic"],
                generator_version=rec["version"])
    full = dict(base, speakers=rec["speakers"], utterances=utts)
    rows: list[dict] = []

    def add(task: str, k: int, prompt: str, answer: str, choices=None, offset=0.0, duration=None, **meta):
        rows.append(dict(id=f"{rec['id']}-{task}-{k}", audio=audio, offset=_q(offset),
                         duration=_q(rec["duration"] if duration is None else duration), task=task, prompt=prompt,
                         choices=choices, answer=answer, metric=TASKS[task].metric, metadata=meta or full))

    for task in tasks:
        rng = _task_rng(seed, split, index, task)
        if task == "asr_short" and utts:
            k = min(len(utts), math.ceil(rec["duration"] / 30))
            for j, i in enumerate(sorted(rng.choice(len(utts), size=k, replace=False))):
                u = utts[int(i)]
                add(task, j, "Transcribe the speech.", u["text"], offset=u["start"], duration=u["end"] - u["start"],
                    **dict(base, speakers=[by_id[u["speaker"]]], utterances=[u]))
        elif task == "asr_long" and utts:
            add(task, 0, "Transcribe the whole recording.", " ".join(u["text"] for u in utts))
        elif task == "sir":
            for j, nd in enumerate(rec["needles"]):
                add(task, j, nd["question"], nd["answer"], choices=nd["choices"], **dict(full, needle=nd))
        elif task == "speaker_count" and utts:
            n = len({u["speaker"] for u in utts})
            add(task, 0, "How many different speakers talk in this recording? Answer with a number.", str(n))
        elif task == "speaker_attribution":
            intro = _introduced(rec)
            texts = Counter(u["text"] for u in utts)
            ok = {s["id"] for s in intro}
            cands = [u for u in utts if u["kind"] in ("content", "key") and u["speaker"] in ok and texts[u["text"]] == 1]
            if len(intro) < 2 or not cands:
                continue
            u = cands[int(rng.integers(len(cands)))]
            right = by_id[u["speaker"]]["name"]
            others = [s["name"] for s in intro if s["name"] != right]
            others = [others[i] for i in rng.permutation(len(others))][:3]
            pool = pools_for(split)
            firsts = {nm.split()[0] for nm in (s["name"] for s in rec["speakers"])}
            while len(others) < 3:
                g = "female_name" if rng.random() < 0.5 else "male_name"
                first = pool[g][int(rng.integers(len(pool[g])))]
                if first not in firsts:
                    firsts.add(first)
                    others.append(f"{first} {pool['surname'][int(rng.integers(len(pool['surname'])))]}")
            choices, ans = _mcq(rng, right, others)
            add(task, 0, f'Who said: "{u["text"]}"?', ans, choices=choices, **dict(full, quoted=u))
        elif task == "temporal_order":
            gists = Counter(u["gist"] for u in utts)
            cands = [u for u in utts if u["kind"] == "content" and gists[u["gist"]] == 1]
            if len(cands) < 4:
                continue
            picked = [b[int(rng.integers(len(b)))] for b in np.array_split(np.array(cands, dtype=object), 4)]
            first = min(picked, key=lambda u: u["start"])
            choices, ans = _mcq(rng, first["gist"], [u["gist"] for u in picked if u is not first])
            add(task, 0, "Which of these was mentioned first in the recording?", ans, choices=choices,
                **dict(full, events=sorted(picked, key=lambda u: u["start"])))
        elif task == "mention_count":
            transcript = " ".join(u["text"] for u in utts)
            counts = {w: _word_count(transcript, w) for w in pools_for(split)["item"]}
            said = sorted(w for w, c in counts.items() if c > 0)
            if not said:
                continue
            word = said[int(rng.integers(len(said)))]
            mentions = [u["start"] for u in utts for _ in range(_word_count(u["text"], word))]
            add(task, 0, f'How many times is the word "{word}" said in the recording? Answer with a number.',
                str(counts[word]), **dict(full, word=word, count=counts[word], mention_starts=mentions))
        elif task in ("speaker_gender", "speaking_rate"):
            intro = _introduced(rec)
            if not intro:
                continue
            s = intro[int(rng.integers(len(intro)))]
            who = s["name"]
            if task == "speaker_gender":
                choices = ["female", "male"]
                add(task, 0, f"What is the gender of {who}?", LETTERS[choices.index(s["gender"])], choices=choices,
                    **dict(full, target_speaker=s["id"]))
            else:
                spoken = [u for u in utts if u["speaker"] == s["id"]]
                words = sum(len(u["text"].split()) for u in spoken)
                secs = sum(u["end"] - u["start"] for u in spoken)
                choices = list(RATE_CLASSES)
                add(task, 0, f"How fast does {who} speak?", LETTERS[choices.index(s["rate_class"])], choices=choices,
                    **dict(full, target_speaker=s["id"], measured_wpm=round(60 * words / max(secs, 1e-6), 1)))
        elif task == "summary" and utts:
            add(task, 0, "Summarize the recording: what kind of recording it is, its topic and its key points.",
                rec["summary"])
    return rows


# --------------------------------------------------------------------------------------------- the corpus

def plan_durations(durations, hours: float | None) -> list[float]:
    """One recording per duration, or cycle through them until ``hours`` of audio are planned."""
    durations = [float(d) for d in durations]
    if not durations or any(d < 1 for d in durations):
        raise ConfigError(f"durations must be >= 1 second, got {durations}")
    if hours is None:
        return durations
    if hours <= 0:
        raise ConfigError(f"--hours must be > 0, got {hours}")
    plan, total, i = [], 0.0, 0
    while total < hours * 3600 - 1e-9:
        plan.append(durations[i % len(durations)])
        total += plan[-1]
        i += 1
    return plan


def parse_duration(text: str) -> float:
    """'30', '90s', '5m', '1.5h' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise ConfigError(f"cannot read duration {text!r} (use e.g. 30, 90s, 5m, 1h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@dataclass
class SynthReport:
    manifest: Path
    recordings: int
    reused: int
    examples: int
    audio_seconds: float
    bytes: int


def synthesize(out: str | os.PathLike, seed: int, split: str = "train", durations=(30, 90, 300),
               hours: float | None = None, tasks=None, jobs: int | None = None, progress: bool = False) -> SynthReport:
    """Write ``out/<split>/*.flac`` + sidecars and the manifest ``out/<split>.jsonl``; skips finished recordings."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    tasks = list(SYNTH_TASKS) if not tasks else list(tasks)
    unknown = [t for t in tasks if t not in SYNTH_TASKS]
    if unknown:
        raise ConfigError(f"unknown task(s) {', '.join(unknown)}; synth makes: {', '.join(SYNTH_TASKS)}")
    plan = plan_durations(durations, hours)
    out = Path(out)
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    jobs = max(1, jobs or min(4, os.cpu_count() or 1))
    from tqdm import tqdm

    rows: list[dict] = []
    reused = size = 0
    bar = tqdm(total=sum(plan), unit="s", desc=f"synth {split}", disable=None if progress else True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
    with ThreadPoolExecutor(max_workers=jobs) as executor, bar:
        for index, duration in enumerate(plan):
            rid = recording_id(seed, split, index)
            flac, side = folder / f"{rid}.flac", folder / f"{rid}.json"
            rec = _finished(side, flac, seed, split, index, duration)
            if rec is None:
                rec = build_recording(seed, split, index, duration, flac, executor, bar)
                rec["audio"] = flac.name
                atomic_write_json(side, rec)
                rec = json.loads(side.read_text(encoding="utf-8"))  # key order as stored, so reruns match
            else:
                reused += 1
                bar.update(duration)
            size += flac.stat().st_size
            rows += examples_for(rec, f"{split}/{flac.name}", tasks)
    manifest = out / f"{split}.jsonl"
    atomic_write_text(manifest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return SynthReport(manifest, len(plan), reused, len(rows), float(sum(plan)), size)


def _finished(side: Path, flac: Path, seed: int, split: str, index: int, duration: float) -> dict | None:
    """The sidecar of a recording this exact request already produced, else None (so it is rebuilt)."""
    if not (side.is_file() and flac.is_file()):
        return None
    try:
        rec = json.loads(side.read_text(encoding="utf-8"))
        frames = sf.info(str(flac)).frames
    except (OSError, ValueError, RuntimeError):
        return None
    same = (rec.get("seed"), rec.get("split"), rec.get("index"), rec.get("version")) == (seed, split, index, VERSION)
    if same and frames == int(round(duration * SAMPLE_RATE)) and rec.get("duration") == _q(frames / SAMPLE_RATE):
        return rec
    return None

"""The synthetic benchmark's questions: one writer per task, each reading a recording's timeline and asking what
its metadata can answer exactly (who said what, when, how often, how many speakers).

A writer gets the recording and its own task RNG (``recording.task_rng``), so adding, dropping or changing one
task never changes another's questions. To add a task: a writer here, its name in ``schema.SYNTH_TASKS`` (the end
of the tuple keeps every other task's RNG stream) and its metric in ``schema.TASKS``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from speechpress.data.recording import q, task_rng
from speechpress.data.schema import LETTERS, SYNTH_TASKS, TASKS
from speechpress.data.voices import RATE_CLASSES
from speechpress.data.vocab import pools_for


@dataclass
class Asking:
    """One recording being asked about, and the rows asked so far."""

    rec: dict
    audio: str  # the recording's path relative to the manifest
    rows: list[dict] = field(default_factory=list)

    @property
    def utts(self) -> list[dict]:
        return self.rec["utterances"]

    @property
    def speaker(self) -> dict:
        return {s["id"]: s for s in self.rec["speakers"]}

    @property
    def base(self) -> dict:
        r = self.rec
        return dict(recording=r["id"], seed=r["seed"], split=r["split"], genre=r["genre"], topic=r["topic"],
                    generator_version=r["version"])

    @property
    def full(self) -> dict:
        """The metadata most questions carry: the whole timeline."""
        return dict(self.base, speakers=self.rec["speakers"], utterances=self.utts)

    def introduced(self) -> list[dict]:
        """Speakers who say their name, so a question can name them."""
        ids = {u["speaker"] for u in self.utts if u["kind"] == "intro"}
        return [s for s in self.rec["speakers"] if s["id"] in ids]

    def add(self, task: str, k: int, prompt: str, answer: str, choices=None, offset=0.0, duration=None, **meta):
        rec = self.rec
        self.rows.append(dict(id=f"{rec['id']}-{task}-{k}", audio=self.audio, offset=q(offset),
                              duration=q(rec["duration"] if duration is None else duration), task=task, prompt=prompt,
                              choices=choices, answer=answer, metric=TASKS[task].metric, metadata=meta or self.full))


def _mcq(rng: np.random.Generator, right: str, wrong: list[str], shuffle: bool = True) -> tuple[list[str], str]:
    options = [right] + wrong
    order = rng.permutation(len(options)) if shuffle else np.arange(len(options))
    choices = [options[i] for i in order]
    return choices, LETTERS[choices.index(right)]


def _word_count(text: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE))


# --------------------------------------------------------------------------------------------- one writer per task
def asr_short(a: Asking, rng: np.random.Generator) -> None:
    """About one utterance per 30 s, each its own short segment of the recording."""
    if not a.utts:
        return
    k = min(len(a.utts), math.ceil(a.rec["duration"] / 30))
    for j, i in enumerate(sorted(rng.choice(len(a.utts), size=k, replace=False))):
        u = a.utts[int(i)]
        a.add("asr_short", j, "Transcribe the speech.", u["text"], offset=u["start"], duration=u["end"] - u["start"],
              **dict(a.base, speakers=[a.speaker[u["speaker"]]], utterances=[u]))


def asr_long(a: Asking, rng: np.random.Generator) -> None:
    if a.utts:
        a.add("asr_long", 0, "Transcribe the whole recording.", " ".join(u["text"] for u in a.utts))


def sir(a: Asking, rng: np.random.Generator) -> None:
    """SPIRAL-style retrieval: each needle placed at its depth asks its own multiple-choice question."""
    for j, nd in enumerate(a.rec["needles"]):
        a.add("sir", j, nd["question"], nd["answer"], choices=nd["choices"], **dict(a.full, needle=nd))


def speaker_count(a: Asking, rng: np.random.Generator) -> None:
    if a.utts:
        n = len({u["speaker"] for u in a.utts})
        a.add("speaker_count", 0, "How many different speakers talk in this recording? Answer with a number.", str(n))


def speaker_attribution(a: Asking, rng: np.random.Generator) -> None:
    """Who said a quoted sentence; wrong options are the other named speakers, then unheard names."""
    intro = a.introduced()
    texts = Counter(u["text"] for u in a.utts)
    ok = {s["id"] for s in intro}
    cands = [u for u in a.utts if u["kind"] in ("content", "key") and u["speaker"] in ok and texts[u["text"]] == 1]
    if len(intro) < 2 or not cands:
        return
    u = cands[int(rng.integers(len(cands)))]
    right = a.speaker[u["speaker"]]["name"]
    others = [s["name"] for s in intro if s["name"] != right]
    others = [others[i] for i in rng.permutation(len(others))][:3]
    pool = pools_for(a.rec["split"])
    firsts = {nm.split()[0] for nm in (s["name"] for s in a.rec["speakers"])}
    while len(others) < 3:
        g = "female_name" if rng.random() < 0.5 else "male_name"
        first = pool[g][int(rng.integers(len(pool[g])))]
        if first not in firsts:
            firsts.add(first)
            others.append(f"{first} {pool['surname'][int(rng.integers(len(pool['surname'])))]}")
    choices, ans = _mcq(rng, right, others)
    a.add("speaker_attribution", 0, f'Who said: "{u["text"]}"?', ans, choices=choices, **dict(a.full, quoted=u))


def temporal_order(a: Asking, rng: np.random.Generator) -> None:
    """Which of four gists, one from each quarter of the content, came first."""
    gists = Counter(u["gist"] for u in a.utts)
    cands = [u for u in a.utts if u["kind"] == "content" and gists[u["gist"]] == 1]
    if len(cands) < 4:
        return
    picked = [b[int(rng.integers(len(b)))] for b in np.array_split(np.array(cands, dtype=object), 4)]
    first = min(picked, key=lambda u: u["start"])
    choices, ans = _mcq(rng, first["gist"], [u["gist"] for u in picked if u is not first])
    a.add("temporal_order", 0, "Which of these was mentioned first in the recording?", ans, choices=choices,
          **dict(a.full, events=sorted(picked, key=lambda u: u["start"])))


def mention_count(a: Asking, rng: np.random.Generator) -> None:
    transcript = " ".join(u["text"] for u in a.utts)
    counts = {w: _word_count(transcript, w) for w in pools_for(a.rec["split"])["item"]}
    said = sorted(w for w, c in counts.items() if c > 0)
    if not said:
        return
    word = said[int(rng.integers(len(said)))]
    mentions = [u["start"] for u in a.utts for _ in range(_word_count(u["text"], word))]
    a.add("mention_count", 0, f'How many times is the word "{word}" said in the recording? Answer with a number.',
          str(counts[word]), **dict(a.full, word=word, count=counts[word], mention_starts=mentions))


def speaker_gender(a: Asking, rng: np.random.Generator) -> None:
    intro = a.introduced()
    if not intro:
        return
    s = intro[int(rng.integers(len(intro)))]
    choices = ["female", "male"]
    a.add("speaker_gender", 0, f"What is the gender of {s['name']}?", LETTERS[choices.index(s["gender"])],
          choices=choices, **dict(a.full, target_speaker=s["id"]))


def speaking_rate(a: Asking, rng: np.random.Generator) -> None:
    intro = a.introduced()
    if not intro:
        return
    s = intro[int(rng.integers(len(intro)))]
    spoken = [u for u in a.utts if u["speaker"] == s["id"]]
    words = sum(len(u["text"].split()) for u in spoken)
    secs = sum(u["end"] - u["start"] for u in spoken)
    choices = list(RATE_CLASSES)
    a.add("speaking_rate", 0, f"How fast does {s['name']} speak?", LETTERS[choices.index(s["rate_class"])],
          choices=choices, **dict(a.full, target_speaker=s["id"], measured_wpm=round(60 * words / max(secs, 1e-6), 1)))


def summary(a: Asking, rng: np.random.Generator) -> None:
    if a.utts:
        a.add("summary", 0, "Summarize the recording: what kind of recording it is, its topic and its key points.",
              a.rec["summary"])


WRITERS: dict[str, Callable[[Asking, np.random.Generator], None]] = {
    "asr_short": asr_short, "asr_long": asr_long, "sir": sir, "speaker_count": speaker_count,
    "speaker_attribution": speaker_attribution, "temporal_order": temporal_order, "mention_count": mention_count,
    "speaker_gender": speaker_gender, "speaking_rate": speaking_rate, "summary": summary,
}
assert set(WRITERS) == set(SYNTH_TASKS), "every synth task needs a writer"


def examples_for(rec: dict, audio: str, tasks=SYNTH_TASKS) -> list[dict]:
    """Manifest rows for one recording; ``audio`` is its path relative to the manifest."""
    asking = Asking(rec, audio)
    for task in tasks:
        WRITERS[task](asking, task_rng(rec["seed"], rec["split"], rec["index"], task))
    return asking.rows

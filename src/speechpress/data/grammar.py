"""What the synthetic speakers say: genre templates, needle facts and summaries, all from one seeded RNG.

Every template carries a partitioned slot (a name, place, item, project or room; see ``vocab``), which is what
keeps sentences and needles disjoint between splits. Each sentence also has a short *gist* (a noun phrase or
clause) so temporal-order choices and summaries can name it without quoting it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from speechpress.data.vocab import COLOURS, MONTHS, WEEKDAYS, lexicon_for, pools_for

PARTITIONED_SLOTS = ("first", "person", "place", "item", "project", "room")

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = {1: "first", 2: "second", 3: "third", 5: "fifth", 8: "eighth", 9: "ninth", 12: "twelfth"}


def number_words(n: int) -> str:
    """0..9999 in words, so transcripts match what espeak-ng says and WER is not about digit formatting."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def ordinal_words(n: int) -> str:
    if n in _ORDINALS:
        return _ORDINALS[n]
    if n < 20:
        w = number_words(n)
        return (w[:-1] + "ieth") if w.endswith("y") else w + "th"
    tens, ones = divmod(n, 10)
    if ones == 0:
        return _TENS[tens][:-1] + "ieth"
    return _TENS[tens] + " " + ordinal_words(ones)


def year_words(y: int) -> str:
    hi, lo = divmod(y, 100)
    return number_words(hi) + " " + ("hundred" if lo == 0 else ("oh " + _ONES[lo]) if lo < 10 else number_words(lo))


def time_words(h: int, m: int) -> str:
    return number_words(h) + (" o'clock" if m == 0 else (" oh " + _ONES[m]) if m < 10 else " " + number_words(m))


# Haystack templates: (text, gist). Slots: {first} {person} {place} {item} {project} {room} {weekday} {month}
# {time} {number} {percent} {year} {colour}.
CONTENT = {
    "meeting": [
        ("We need to move the {item} delivery to {place} before {weekday}.", "moving the {item} delivery to {place}"),
        ("{first} has finished the first draft of the {project} report.", "the draft of the {project} report"),
        ("The {place} office is asking for {number} more {item} units.", "the {place} office asking for more {item} units"),
        ("Can someone check whether the {item} in the {room} still works?", "checking the {item} in the {room}"),
        ("The client from {place} wants a call on {weekday} at {time}.", "a call with the client from {place}"),
        ("I think the {project} timeline is too tight for the team in {place}.", "the tight {project} timeline"),
        ("{first} will book the {room} for the {project} review.", "booking the {room} for the {project} review"),
        ("Our supplier in {place} raised the price of the {item} by {percent} percent.", "the higher {item} price from {place}"),
        ("Let's put the {item} question on the agenda for {weekday}.", "the {item} question on the agenda"),
        ("{first} suggested that we test the {item} in {place} first.", "testing the {item} in {place}"),
        ("The {project} team still needs access to the {room}.", "access to the {room} for the {project} team"),
        ("I sent the {project} slides to {person} this morning.", "the {project} slides sent to {person}"),
    ],
    "lecture": [
        ("Today we will look at how the {item} was first used in {place}.", "the first use of the {item} in {place}"),
        ("In {year}, engineers in {place} improved the design of the {item}.", "the improved {item} design from {place}"),
        ("Remember that the {project} experiment is due on {weekday} at {time}.", "the deadline of the {project} experiment"),
        ("The key idea is that every {item} loses some energy over time.", "why every {item} loses energy"),
        ("{person} wrote the classic paper on the {item} in {year}.", "{person}'s paper on the {item}"),
        ("For next week, please read the chapter about the {item} trade in {place}.", "the reading about the {item} trade in {place}"),
        ("You can see an early {item} in the museum in {place}.", "the early {item} in the museum in {place}"),
        ("The {project} model predicts how fast a {item} wears out.", "the {project} model of {item} wear"),
        ("Our lab in the {room} has a working {item} you can try.", "the working {item} in the {room}"),
    ],
    "news": [
        ("Officials in {place} announced a new plan for the {project} bridge.", "the new {project} bridge plan in {place}"),
        ("Heavy rain is expected in {place} on {weekday}, with up to {number} millimetres.", "heavy rain in {place}"),
        ("The {project} festival in {place} sold {number} tickets this year.", "ticket sales at the {project} festival"),
        ("A shortage of {item} parts has slowed factories near {place}.", "the {item} shortage near {place}"),
        ("{person}, the mayor of {place}, will speak on {weekday}.", "the speech by the mayor of {place}"),
        ("Shares of {project} Holdings rose {percent} percent after the {place} deal.", "the rise of {project} Holdings shares"),
        ("Traffic on the {place} ring road is moving slowly after an accident.", "slow traffic in {place}"),
        ("A rare {item} from {year} was sold at auction in {place}.", "the auction of a rare {item} in {place}"),
        ("The {place} council will vote on the {project} park on {weekday}.", "the vote on the {project} park"),
    ],
    "conversation": [
        ("Did you hear that {first} got a new {item}?", "{first}'s new {item}"),
        ("I'm thinking of visiting {place} in {month}.", "a trip to {place} in {month}"),
        ("My cousin {first} just moved to {place}.", "a cousin moving to {place}"),
        ("Have you tried the new cafe in {place}?", "the new cafe in {place}"),
        ("I borrowed {first}'s {item} and forgot to give it back.", "the borrowed {item}"),
        ("We should watch the {project} match on {weekday}.", "watching the {project} match"),
        ("Honestly, my {item} broke again yesterday.", "the broken {item}"),
        ("The train to {place} was late again this morning.", "the late train to {place}"),
        ("{first} says the {item} at the market costs {number} dollars.", "the price of the {item} at the market"),
    ],
}
QUESTIONS = [  # lecture audience turns
    ("Does the {item} work the same way in {place}?", "whether the {item} works the same way in {place}"),
    ("Is the {project} experiment graded?", "whether the {project} experiment is graded"),
    ("Where can we find the {item} you mentioned?", "where to find the {item}"),
]
KEYS = {
    "meeting": [
        ("We have decided to open the new office in {place} in {month}.", "they decided to open a new office in {place} in {month}"),
        ("From now on, {first} will lead the {project} audit.", "{first} will lead the {project} audit"),
        ("We agreed to cut the {item} budget by {percent} percent.", "they agreed to cut the {item} budget by {percent} percent"),
        ("The {project} launch is postponed until {month}.", "the {project} launch is postponed until {month}"),
    ],
    "lecture": [
        ("The main lesson is that the {item} changed daily life in {place}.", "the {item} changed daily life in {place}"),
        ("So the {project} theory explains why the {item} works.", "the {project} theory explains why the {item} works"),
        ("Your essay on the {item} is due in {month}.", "an essay on the {item} is due in {month}"),
    ],
    "news": [
        ("Our top story: the {project} bridge in {place} will open in {month}.", "the {project} bridge in {place} will open in {month}"),
        ("And finally, {place} has won the {project} award.", "{place} won the {project} award"),
        ("The {item} factory in {place} will close in {month}.", "the {item} factory in {place} will close in {month}"),
    ],
    "conversation": [
        ("So we'll meet in {place} on {weekday}, right?", "they plan to meet in {place} on {weekday}"),
        ("Okay, I'll bring the {item} to the party.", "one of them will bring the {item} to the party"),
        ("Let's book the trip to {place} for {month}.", "they will book a trip to {place} for {month}"),
    ],
    "lexicon": [
        ("Note that the {project} word lists are kept in the {room}.", "the {project} word lists are kept in the {room}"),
    ],
    "dictation": [
        ("Note that the {project} files are kept in the {room}.", "the {project} files are kept in the {room}"),
        ("The last item on the list is the {item} from {place}.", "the last item is the {item} from {place}"),
    ],
}
INTROS = {
    "meeting": ("Good morning, I'm {name}, and today we will discuss the {project} project in {place}.", "Hi everyone, this is {name}."),
    "lecture": ("Good morning, my name is {name}, and today's lecture is about the history of the {item}.", "Hi, I'm {name}, I have a question."),
    "news": ("Good evening, I'm {name}, and this is the news from {place}.", "This is {name}, reporting from {place2}."),
    "conversation": ("Hey, it's {name}, how are you?", "Hi, {name} here."),
    "dictation": ("Hello, I'm {name}, and I will read the notes on the {project} project.", "This is {name}, next notes."),
    "lexicon": ("Hello, I'm {name}, and I will read the {project} word lists.", "This is {name}, next words."),
}
TOPICS = {
    "meeting": "the {project} project in {place}",
    "lecture": "the history of the {item}",
    "news": "the news from {place}",
    "conversation": "everyday news and plans",
    "dictation": "the {project} project",
    "lexicon": "the {project} word lists",
}
FILLERS = ["Uh, ", "Well, ", "Oh, ", "So, ", "Right, ", "Um, "]
FILLER_RATE = {"meeting": 0.2, "lecture": 0.1, "news": 0.0, "conversation": 0.4, "dictation": 0.0, "lexicon": 0.0}
# Dictation (opt-in: `speechpress synth --genres dictation`) has no CONTENT table: its speakers read notes no
# template predicts (Grammar.dictation), so a model trained to transcribe them has to hear every name and number.
# What a dictation word list draws from: each entry is one spoken item; the partitioned ones keep splits disjoint.
_LIST_SLOTS = ("first", "person", "place", "item", "project", "room", "weekday", "month", "colour", "time",
               "number", "year", "ordinal", "code")

# Needle facts: statement, question, the answer's slot, and how to make the wrong options.
NEEDLES = [
    ("{person}'s flight to {place} leaves at {time}.", "When does {person}'s flight to {place} leave?", "time"),
    ("The door code for the {room} is {code}.", "What is the door code for the {room}?", "code"),
    ("{person} left the {item} in the {room2}.", "Where did {person} leave the {item}?", "room2"),
    ("The {project} launch has been moved to {weekday} the {ordinal} of {month}.", "When is the {project} launch now?", "date"),
    ("The budget for the {project} project is {number} thousand dollars.", "What is the budget for the {project} project?", "money"),
    ("{person} is moving to {place2} in {month}.", "Where is {person} moving in {month}?", "place2"),
    ("The spare key to the {room} is under the {colour} {item}.", "Where is the spare key to the {room}?", "hiding"),
]

_SLOT = re.compile(r"{(\w+)}")
_LOWERABLE = {"the", "we", "can", "let's", "our", "did", "have", "my", "honestly", "today", "in", "remember", "for",
              "you", "is", "does", "where", "shares", "heavy", "traffic", "officials", "a", "okay", "so", "from"}


@dataclass(frozen=True)
class Sentence:
    text: str
    gist: str
    kind: str  # intro | content | key | needle


@dataclass(frozen=True)
class Needle:
    text: str
    question: str
    choices: tuple[str, ...]
    answer: int
    family: int


class Grammar:
    """Draws sentences for one recording; the split decides which words it may use."""

    def __init__(self, rng: np.random.Generator, split: str, genre: str):
        self.rng, self.genre, self.split = rng, genre, split
        self.pools = pools_for(split)
        self.topic_slots = {k: self.pick(k) for k in ("project", "place", "item")}

    def pick(self, slot: str) -> str:
        pool = self.pools[slot]
        return pool[int(self.rng.integers(len(pool)))]

    def person(self) -> str:
        gender = "female_name" if self.rng.random() < 0.5 else "male_name"
        return f"{self.pick(gender)} {self.pick('surname')}"

    def value(self, slot: str, topical: bool = True) -> str:
        r = self.rng
        if topical and slot in self.topic_slots and r.random() < 0.35:
            return self.topic_slots[slot]
        if slot in ("place", "item", "project", "room"):
            return self.pick(slot)
        if slot == "place2":
            return self.pick("place")
        if slot == "room2":
            return self.pick("room")
        if slot == "first":
            return self.pick("female_name" if r.random() < 0.5 else "male_name")
        if slot == "person":
            return self.person()
        if slot == "weekday":
            return WEEKDAYS[int(r.integers(7))]
        if slot == "month":
            return MONTHS[int(r.integers(12))]
        if slot == "colour":
            return COLOURS[int(r.integers(len(COLOURS)))]
        if slot == "time":
            return time_words(int(r.integers(1, 13)), int(r.choice([0, 5, 15, 20, 30, 40, 45, 50])))
        if slot == "number":
            return number_words(int(r.choice([int(r.integers(2, 20)), int(r.integers(2, 10)) * 10, int(r.integers(1, 10)) * 100])))
        if slot == "percent":
            return number_words(int(r.integers(2, 40)))
        if slot == "year":
            return year_words(int(r.integers(1820, 2000)))
        if slot == "ordinal":
            return ordinal_words(int(r.integers(1, 29)))
        if slot == "code":
            return " ".join(_ONES[int(d)] for d in r.integers(0, 10, size=4))
        raise KeyError(slot)

    def fill(self, text: str, gist: str, kind: str, extra: dict | None = None) -> Sentence:
        values = dict(extra or {})
        for slot in _SLOT.findall(text + " " + gist):
            if slot not in values:
                values[slot] = self.value(slot)
        return Sentence(text.format(**values), gist.format(**values), kind)

    def topic(self) -> str:
        return TOPICS[self.genre].format(**self.topic_slots)

    def intro(self, name: str, lead: bool) -> Sentence:
        template = INTROS[self.genre][0 if lead else 1]
        extra = dict(self.topic_slots, name=name, place2=self.pick("place"))
        return self.fill(template, f"{name} introducing themself", "intro", extra)

    def content(self, question: bool = False) -> Sentence:
        if self.genre == "dictation":
            return self.dictation()
        if self.genre == "lexicon":
            return self.lexicon()
        table = QUESTIONS if question else CONTENT[self.genre]
        text, gist = table[int(self.rng.integers(len(table)))]
        s = self.fill(text, gist, "content")
        if self.rng.random() < FILLER_RATE[self.genre]:
            filler = FILLERS[int(self.rng.integers(len(FILLERS)))]
            first = s.text.split()[0].strip(",.?!")
            body = s.text[0].lower() + s.text[1:] if first.lower() in _LOWERABLE else s.text
            s = Sentence(filler + body, s.gist, s.kind)
        return s

    def dictation(self) -> Sentence:
        """A sentence no template predicts (a list of 4-9 names, places, numbers ...; a third of the time a needle
        fact, a third a random sentence of another genre), for alignment on content words."""
        r = self.rng
        kind = r.random()
        if kind < 1 / 3:
            needle = self.needle(set())
            return Sentence(needle.text, needle.text, "content")
        if kind < 2 / 3:
            genre = tuple(CONTENT)[int(r.integers(len(CONTENT)))]  # the four genres with sentence tables
            text, gist = CONTENT[genre][int(r.integers(len(CONTENT[genre])))]
            return self.fill(text, gist, "content")
        n = int(r.integers(4, 10))
        slots = [_LIST_SLOTS[int(i)] for i in r.integers(len(_LIST_SLOTS), size=n)]
        if not any(slot in PARTITIONED_SLOTS for slot in slots):
            slots[int(r.integers(n))] = PARTITIONED_SLOTS[int(r.integers(len(PARTITIONED_SLOTS)))]
        words = [self.value(slot, topical=False) for slot in slots]
        text = ", ".join(words)
        return Sentence(text[0].upper() + text[1:] + ".", f"a list starting with {words[0]}", "content")

    def lexicon(self) -> Sentence:
        """A list of 4-9 words of this split's lexicon (the LLM's single-token words): thousands of words, each
        one token, so a projector learns to put a spoken word on its token for far more words than the corpus has."""
        words = lexicon_for(self.split)
        picked = [words[int(i)] for i in self.rng.integers(len(words), size=int(self.rng.integers(4, 10)))]
        text = ", ".join(picked)
        return Sentence(text[0].upper() + text[1:] + ".", f"words starting with {picked[0]}", "content")

    def key(self) -> Sentence:
        table = KEYS[self.genre]
        text, gist = table[int(self.rng.integers(len(table)))]
        return self.fill(text, gist, "key")

    def needle(self, used_families: set[int]) -> Needle:
        """One retrieval fact with a 4-way question whose wrong options are drawn like the right one."""
        free = [i for i in range(len(NEEDLES)) if i not in used_families] or list(range(len(NEEDLES)))
        fam = free[int(self.rng.integers(len(free)))]
        text, question, slot = NEEDLES[fam]
        values = {s: self.value(s, topical=False) for s in _SLOT.findall(text + " " + question) if s != "code"}
        if "code" in _SLOT.findall(text):
            values["code"] = self.value("code")

        def answer_of(v: dict) -> str:
            if slot == "code":
                return "".join(str(_ONES.index(w)) for w in v["code"].split())
            if slot == "date":
                return f"{v['weekday']} the {v['ordinal']} of {v['month']}"
            if slot == "money":
                return f"{v['number']} thousand dollars"
            if slot == "hiding":
                return f"under the {v['colour']} {v['item']}"
            if slot == "room2":
                return f"in the {v['room2']}"
            return v[slot]

        right = answer_of(values)
        options = [right]
        for _ in range(200):
            if len(options) == 4:
                break
            alt = dict(values)
            if slot == "date":
                for s in ("weekday", "ordinal", "month"):
                    alt[s] = self.value(s)
            elif slot == "money":
                alt["number"] = self.value("number")
            elif slot == "hiding":
                alt["colour"], alt["item"] = self.value("colour"), self.value("item", topical=False)
            else:
                alt[slot] = self.value(slot, topical=False)
            cand = answer_of(alt)
            if cand not in options:
                options.append(cand)
        if len(options) < 4:
            raise RuntimeError(f"needle family {fam} could not find 4 distinct options")
        order = self.rng.permutation(4)
        choices = tuple(options[i] for i in order)
        return Needle(text.format(**values), question.format(**values), choices, int(np.argmax(order == 0)), fam)

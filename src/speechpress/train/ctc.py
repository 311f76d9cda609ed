"""Characters for the CTC recipe (phase 0): the alphabet, text normalisation, targets and greedy decoding."""

from __future__ import annotations

import re

CTC_ALPHABET = " 'abcdefghijklmnopqrstuvwxyz0123456789"


def ctc_normalize(text: str) -> str:
    """Lower case, letters/digits/apostrophes kept, other characters to spaces, spaces collapsed."""
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return re.sub(r" +", " ", text).strip()


def ctc_targets(text: str) -> list[int]:
    return [CTC_ALPHABET.index(c) + 1 for c in ctc_normalize(text)]  # 0 is the blank


def ctc_greedy_decode(ids: list[int]) -> str:
    out, prev = [], 0
    for i in ids:
        if i != prev and i != 0:
            out.append(CTC_ALPHABET[i - 1])
        prev = i
    return "".join(out)

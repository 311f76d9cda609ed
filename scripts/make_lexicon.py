#!/usr/bin/env python3
"""Write src/speechpress/data/lexicon.txt: the words `speechpress synth --genres lexicon` reads aloud.

They are the LLM's own single-token words: every lowercase entry of SmolLM2-135M-Instruct's tokenizer (the bundled
speechpress-smol's tokenizer.json, Apache-2.0) that is a space followed by three or more letters a-z, the first
10,000 by token id (BPE merges learned early: common words, and some word pieces such as "con", which espeak-ng
reads as it reads any spelling). A projector trained to put each spoken word on its one token
(`train.ctc_frames: llm`) then sees thousands of words instead of the corpus's few hundred. Words of the corpus's
own pools (names, places, items, projects, rooms; any split) are left out, so no test-split word enters training
through the lexicon; the lexicon is split between train, validation and test by the same fixed hash as the pools.

    python scripts/make_lexicon.py            # rewrites the file; the same tokenizer gives the same bytes
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = 10_000


def main() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from speechpress.data import vocab

    tokenizer = json.loads((ROOT / "src/speechpress/assets/speechpress-smol/tokenizer.json").read_text(encoding="utf-8"))
    pools = {w.lower() for pool in (vocab.FEMALE_NAMES, vocab.MALE_NAMES, vocab.SURNAMES, vocab.PLACES, vocab.ITEMS,
                                    vocab.PROJECTS, vocab.ROOMS) for entry in pool for w in entry.replace("_", " ").split()}
    words = sorted((i, tok[1:]) for tok, i in tokenizer["model"]["vocab"].items() if re.fullmatch(r"\u0120[a-z]{3,}", tok))
    kept = [w for _, w in words if w not in pools][:SIZE]
    out = ROOT / "src/speechpress/data/lexicon.txt"
    out.write_text("\n".join(kept) + "\n", encoding="utf-8")
    print(f"{out}: {len(kept)} words (of {len(words)} single-token lowercase words; {len(pools)} pool words left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write docs/results.md from the fidelity study's runs (scripts/fidelity_study.sh): the per-length tables, the
sweep's time, and one line per paper claim (speechpress.evaluate.study says how claims are judged).

    python scripts/fidelity_report.py results/fidelity --out docs/results.md --model speechpress-smol
"""

import argparse
import sys


def main(argv=None) -> int:
    from speechpress.errors import SpeechpressError
    from speechpress.evaluate.study import write_results

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs_dir", help="the --out folder of the study's `speechpress eval` runs")
    p.add_argument("--out", default="docs/results.md", help="the markdown file to write (atomically)")
    p.add_argument("--model", default="", help="the model's name, for the header")
    args = p.parse_args(argv)
    try:
        path = write_results(args.runs_dir, args.out, args.model)
    except SpeechpressError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

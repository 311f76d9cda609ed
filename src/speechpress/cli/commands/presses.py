"""`speechpress presses`: list every compression method."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "presses",
        help="list the compression methods (presses)",
        description="List every press with where it acts, whether it is trained, whether it reads the question, and how to run it as its paper does.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from speechpress.presses import available_presses

    rows = [
        {
            "name": name,
            "space": cls.space,
            "trainable": cls.trainable,
            "query_aware": cls.query_aware,
            "description": cls.description,
            "paper_setting": cls.paper,
            "unavailable": cls.unavailable(),
        }
        for name, cls in available_presses().items()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<12} {'acts on':<8} {'trained':<8} {'query':<6} description")
    for r in rows:
        print(
            f"{r['name']:<12} {r['space']:<8} {'yes' if r['trainable'] else 'no':<8} "
            f"{'yes' if r['query_aware'] else 'no':<6} {r['description']}"
        )
        if r["paper_setting"]:
            print(f"{'':<38}{r['paper_setting']}")
        if r["unavailable"]:
            print(f"{'':<38}unavailable here: {r['unavailable']}")
    return 0

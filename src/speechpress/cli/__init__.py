"""The ``speechpress`` command. Each subcommand is one module in ``speechpress.cli.commands`` exposing
``register(subparsers)``; this file only discovers them and turns expected errors into exit code 2."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from speechpress import __version__
from speechpress.errors import SpeechpressError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechpress",
        description=(
            "Long-form speech understanding for speech LLMs by compressing audio tokens. "
            "Run `speechpress COMMAND --help` for each command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"speechpress {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import speechpress.cli.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        importlib.import_module(f"speechpress.cli.commands.{info.name}").register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except SpeechpressError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

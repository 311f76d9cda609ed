"""Name -> press class, and the parser for press specs such as ``avgpool:2+speechprune:4``."""

from __future__ import annotations

import importlib
import pkgutil

from speechpress.errors import PressError
from speechpress.presses.base import SPACES, Press

PRESSES: dict[str, type[Press]] = {}


def register_press(cls: type[Press]) -> type[Press]:
    """Class decorator: make a press available by its ``name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a name")
    if cls.space not in SPACES:
        raise TypeError(f"{cls.__name__}.space must be one of {SPACES}")
    PRESSES[cls.name] = cls
    return cls


def _load_all() -> None:
    """Import every module in this package once, so each file's @register_press runs."""
    import speechpress.presses as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("base", "registry"):
            importlib.import_module(f"speechpress.presses.{info.name}")


def available_presses() -> dict[str, type[Press]]:
    _load_all()
    return dict(sorted(PRESSES.items()))


def build_press(name: str, ratio: float | None = None, tokens_per_second: float | None = None, **kwargs) -> Press:
    """Instantiate the press called ``name``; unknown names get a PressError listing the known ones."""
    presses = available_presses()
    if name not in presses:
        raise PressError(f"unknown press {name!r}; available: {', '.join(presses)}")
    return presses[name](ratio=ratio, tokens_per_second=tokens_per_second, **kwargs)


def parse_press_spec(spec: str, ratio: float | None = None, tokens_per_second: float | None = None) -> list[tuple]:
    """Parse ``"avgpool:2+speechprune:4"`` into [(name, ratio, tps), ...].

    A bare name takes the ``ratio``/``tokens_per_second`` given beside the spec; ``name:K`` fixes its own ratio
    and ``name@T`` a tokens-per-second target.
    """
    if not spec or not spec.strip():
        raise PressError("empty press spec")
    parts = [p.strip() for p in spec.split("+")]
    out = []
    for part in parts:
        name, r, t = part, None, None
        try:
            if ":" in part:
                name, value = part.split(":", 1)
                r = float(value)
            elif "@" in part:
                name, value = part.split("@", 1)
                t = float(value)
        except ValueError:
            raise PressError(f"cannot read press {part!r}: expected NAME, NAME:RATIO or NAME@TOKENS_PER_SECOND") from None
        if not name.strip():
            where = "chain" if len(parts) > 1 else "press spec"
            raise PressError(f"empty press name in {where} {spec!r}")
        if r is None and t is None and len(parts) == 1:
            r, t = ratio, tokens_per_second
        elif r is None and t is None:
            raise PressError(f"press {name!r} in a chain needs its own ratio, e.g. {name}:2")
        out.append((name.strip(), r, t))
    return out


def check_chain(chain: list[Press]) -> None:
    """A chain must run encoder-space presses first, then LLM-space ones, then at most one KV press last."""
    order = [SPACES.index(p.space) for p in chain]
    if order != sorted(order):
        names = " + ".join(f"{p.name}({p.space})" for p in chain)
        raise PressError(f"presses must act in the order encoder -> llm -> kv; got {names}")
    if sum(p.space == "kv" for p in chain) > 1:
        raise PressError("at most one KV-cache press per chain")

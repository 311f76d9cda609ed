"""The one press-chain builder: inference, training, ``info`` and the cost model all resolve chains here.

A spec is a string (``"avgpool:2+sst:8"``), a Press, a list of Presses, or a list of ``(name, ratio[,
tokens_per_second])`` steps. Each press gets the width of the space it acts in from the model config, and the
chain is checked by where its presses act (``Press.space``), never by their names.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Mapping

from speechpress.errors import PressError
from speechpress.presses.base import Press
from speechpress.presses.registry import available_presses, build_press, check_chain, parse_press_spec

RESERVED_ARGUMENTS = ("self", "ratio", "tokens_per_second", "dim")


def new_press(config, name: str, **kwargs) -> Press:
    """Build press ``name`` for a model of ``config``: trainable presses get the width of the space they act in."""
    presses = available_presses()
    if name not in presses:
        raise PressError(f"unknown press {name!r}; available: {', '.join(presses)}")
    cls = presses[name]
    if cls.trainable and "dim" not in kwargs:
        kwargs["dim"] = config.encoder_output_dim if cls.space == "encoder" else config.llm["hidden_size"]
    if cls.space == "encoder" and "frames_per_second" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("frames_per_second", config.tokens_per_second)  # hfq: a full window's frame count
    return build_press(name, **kwargs)


def split_press_options(names: list[str], options: dict | None, strict: bool = True) -> list[dict]:
    """For each press name, the subset of ``options`` its constructor takes; with ``strict``, an option no press
    takes is an error (a typo must not pass silently)."""
    presses = available_presses()
    options = options or {}
    out, used = [], set()
    for name in names:
        params = inspect.signature(presses[name].__init__).parameters if name in presses else {}
        accepted = {k: v for k, v in options.items() if k in params and k not in RESERVED_ARGUMENTS}
        used |= set(accepted)
        out.append(accepted)
    unused = sorted(set(options) - used)
    if strict and unused:
        raise PressError(f"no press in {'+'.join(names)} takes the option(s) {', '.join(unused)}")
    return out


def parse_steps(spec, ratio: float | None = None, tokens_per_second: float | None = None) -> list[tuple]:
    """[(name, ratio, tokens_per_second)] of a string spec or of a list of (name, ratio[, tps]) steps."""
    if isinstance(spec, str):
        return parse_press_spec(spec, ratio, tokens_per_second)
    steps = []
    for item in spec:
        if not (isinstance(item, (tuple, list)) and 1 <= len(item) <= 3 and isinstance(item[0], str)):
            raise PressError(f"a press chain item is (name, ratio) or (name, ratio, tokens_per_second), got {item!r}")
        name, r, t = (tuple(item) + (None, None))[:3]
        if not name:
            raise PressError("a press in the chain has an empty name")
        steps.append((name, r, t))
    return steps


def build_chain(
    config,
    spec=None,
    ratio: float | None = None,
    tokens_per_second: float | None = None,
    options: dict | None = None,
    *,
    trained: Mapping[str, Press] | None = None,
    strict_options: bool = True,
) -> list[Press]:
    """A checked press chain for a model of ``config``.

    ``trained``: presses that hold trained weights (a model's ``presses``); a name found there is used as a
    shallow copy sharing those weights, with the spec's ratio and options; a trainable press not found there is
    built fresh, with a warning, because its output is noise until trained. ``options`` (e.g.
    ``{"interval_tokens": 128}``) go to every press whose constructor takes them.
    """
    if spec is None:
        spec = "identity"
    if isinstance(spec, Press):
        chain = [spec]
    elif isinstance(spec, (list, tuple)) and all(isinstance(p, Press) for p in spec) and spec:
        chain = list(spec)
    else:
        steps = parse_steps(spec, ratio, tokens_per_second)
        per_press = split_press_options([name for name, _, _ in steps], options, strict_options)
        chain = []
        for (name, r, t), accepted in zip(steps, per_press):
            if trained is not None and name in trained:
                press = copy.copy(trained[name])  # shares the trained parameters
                if r is not None or t is not None:
                    press.ratio, press.tokens_per_second = r, t
                for key, value in accepted.items():
                    setattr(press, key, value)
            else:
                press = new_press(config, name, ratio=r, tokens_per_second=t, **accepted)
                if press.trainable and trained is not None:
                    warnings.warn(f"press {name!r} is trainable but this model holds no trained copy: its output is untrained")
            chain.append(press)
    check_chain(chain)
    return chain


def token_presses(chain: list[Press]) -> list[Press]:
    """The presses that act on token sequences (encoder and LLM space), in order."""
    return [p for p in chain if p.space != "kv"]


def kv_press(chain: list[Press]) -> Press | None:
    """The chain's KV-cache press (always last, at most one), or None."""
    return chain[-1] if chain and chain[-1].space == "kv" else None

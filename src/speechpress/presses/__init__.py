"""Token presses: one file per method; ``available_presses()`` lists them all."""

from speechpress.presses.base import AudioTokens, Press, PressContext
from speechpress.presses.registry import (
    available_presses,
    build_press,
    check_chain,
    parse_press_spec,
    register_press,
)

__all__ = [
    "AudioTokens",
    "Press",
    "PressContext",
    "available_presses",
    "build_press",
    "check_chain",
    "parse_press_spec",
    "register_press",
]

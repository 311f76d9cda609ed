"""No compression: the reference every press is compared against."""

from __future__ import annotations

from speechpress.presses.base import AudioTokens, Press, PressContext
from speechpress.presses.registry import register_press


@register_press
class IdentityPress(Press):
    name = "identity"
    description = "no compression (the uncompressed baseline)"
    paper = ""

    def output_length(self, n_in: int, duration_s: float | None = None) -> int:
        return n_in

    def forward(self, tokens: AudioTokens, context: PressContext | None = None) -> AudioTokens:
        return tokens

"""The leading presses of a chain run while a recording is encoded, so an hour of encoder output is never whole
in memory: only what they emit (1/k of it) and one unfinished group per press.

A press can stream when it acts on consecutive groups of a fixed size from the row's start, each on its own
(``Press.stream_group``: avgpool and downsample at a whole ratio). Emitting every complete group as it arrives and
the short last group at the end gives exactly the groups, and so the tokens and spans, of the press run on the
whole row (tested for equality).
"""

from __future__ import annotations

import torch

from speechpress.presses.base import Press, PressContext


def streaming_prefix(chain: list[Press]) -> list[Press]:
    """The chain's leading encoder-space presses that can stream (possibly none)."""
    prefix = []
    for press in chain:
        if press.space != "encoder" or press.query_aware or press.stream_group() is None:
            break
        prefix.append(press)
    return prefix


class StreamingPresses:
    """Feed encoder tokens in order with :meth:`push`; :meth:`finish` returns (tokens [n, D], spans [n, 2]) and
    ``tokens_in`` counts what went in. ``then`` (the model's projector, which acts on each token alone) runs on
    every emitted group, so only its output is kept, never the presses' output as well."""

    def __init__(self, presses: list[Press], then=None):
        self.presses = list(presses)
        self.then = then
        self.carry: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.presses)
        self.out_tokens: list[torch.Tensor] = []
        self.out_spans: list[torch.Tensor] = []
        self.tokens_in = 0
        self.context = PressContext()

    def push(self, tokens: torch.Tensor, spans: torch.Tensor) -> None:
        self.tokens_in += tokens.shape[0]
        self._feed(0, tokens, spans, final=False)

    def finish(self) -> tuple[torch.Tensor, torch.Tensor]:
        for i in range(len(self.presses)):
            if self.carry[i] is not None:
                tokens, spans = self.carry[i]
                self.carry[i] = None
                self._feed(i, tokens, spans, final=True)
        return torch.cat(self.out_tokens), torch.cat(self.out_spans)

    def _feed(self, i: int, tokens: torch.Tensor, spans: torch.Tensor, final: bool) -> None:
        while i < len(self.presses):
            press = self.presses[i]
            if self.carry[i] is not None:
                tokens, spans = torch.cat([self.carry[i][0], tokens]), torch.cat([self.carry[i][1], spans])
                self.carry[i] = None
            k = press.stream_group()
            done = tokens.shape[0] if final else tokens.shape[0] // k * k
            if done < tokens.shape[0]:
                self.carry[i] = (tokens[done:], spans[done:])
            if done == 0:
                return
            tokens, spans = press.compress_row(tokens[:done], spans[:done], self.context, 0)
            i += 1
        self.out_tokens.append(tokens if self.then is None else self.then(tokens))
        self.out_spans.append(spans)

"""Training clips -> encoder tokens with spans, through the frame cache while the encoder is frozen.

Encoding is ``SpeechLM.encode_feature_windows``, what inference's ``SpeechLM.encode`` runs; this module only puts
a step's clips into one batch of windows and caches frozen-encoder frames.
"""

from __future__ import annotations

import hashlib

import torch

from speechpress.errors import ConfigError
from speechpress.encoder_cache import FrameCache
from speechpress.presses.base import stretch_row
from speechpress.train.data import AudioStore, TrainExample, clip_windows


class AudioFrontend:
    """Clips -> encoder tokens with spans, through the frame cache while the encoder is frozen."""

    def __init__(self, model, store: AudioStore, cache: FrameCache | None, slice_recordings: bool = False,
                 alone_fraction: float = 0.0):
        self.model, self.store, self.cache = model, store, cache
        self.slice_recordings, self.alone_fraction = slice_recordings, alone_fraction

    def encoded_alone(self, ex: TrainExample) -> bool:
        """Whether ``ex`` is encoded on its own: always without slice_recordings, else for the ``alone_fraction``
        of clips a hash of the clip picks (never a random draw, so resuming and sharding see the same choice)."""
        if not self.slice_recordings:
            return True
        digest = hashlib.sha256(ex.clip_key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64 < self.alone_fraction

    def windows(self, examples: list[TrainExample]) -> dict:
        """Log-mel windows of every clip, stacked: what a trainable encoder needs inside ``forward``."""
        cfg = self.model.config
        windows, durations, owner = [], [], []
        for i, ex in enumerate(examples):
            samples = self.store.clip(ex)
            for w in clip_windows(samples, cfg):
                windows.append(w)
                durations.append(len(samples) / cfg.sample_rate)
                owner.append(i)
        return {"windows": windows, "durations": durations, "owner": owner, "n": len(examples)}

    def encode(self, win: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(pooled tokens [n, D], spans [n, 2]) per clip, differentiable when the encoder is."""
        rows: list[list] = [[] for _ in range(win["n"])]
        for owner, (frames, spans) in zip(win["owner"], self.model.encode_feature_windows(win["windows"], win["durations"])):
            if frames.shape[0]:
                rows[owner].append((frames, spans))
        out = []
        for parts in rows:
            if not parts:
                raise ConfigError("a training clip gives this model no audio tokens (too short)")
            out.append((torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])))
        return out

    @torch.no_grad()
    def frozen_tokens(self, examples: list[TrainExample]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Encoder outputs of a frozen encoder, computed once per clip (or, with ``slice_recordings``, once per
        recording and cut per clip, but for the ``alone_fraction``) and then read from the cache."""
        out = []
        for ex in examples:
            if not self.encoded_alone(ex):
                out.append(self.recording_slice(ex))
                continue
            hit = self.cache.get(ex.clip_key) if self.cache is not None else None
            if hit is None:
                # One clip at a time: its frames never depend on which clips share its batch, so a resumed or
                # multi-process run reads bit-identical frames (a one-off cost: later epochs hit the cache).
                ((frames, spans),) = self.encode(self.windows([ex]))
                hit = (frames.float().cpu(), spans)
                if self.cache is not None:
                    self.cache.put(ex.clip_key, *hit)
            out.append(hit)
        return out

    @torch.no_grad()
    def recording_slice(self, ex: TrainExample) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens of ``ex``'s stretch cut from its whole recording's encoding (``AudioTokens.stretch``'s rule)."""
        key = f"{ex.audio}|recording"
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is None:
            tokens = self.model.encode(self.store.recording(ex.audio))
            hit = (tokens.embeddings[0].float().cpu(), tokens.spans[0].cpu())
            if self.cache is not None:
                self.cache.put(key, *hit)
        frames, spans = stretch_row(*hit, ex.offset, ex.duration)  # the cached row as is: no padded copy
        if not frames.shape[0]:
            raise ConfigError(f"{ex.id}: the clip at {ex.offset:.3f} s of {ex.audio} holds no audio token (too short)")
        return frames, spans

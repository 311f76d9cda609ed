"""How many audio tokens a recording becomes, computed in one place.

The encoder sees 30 s windows; window w holding s samples gives ceil(s / hop) mel frames, (m - 1) // 2 + 1
encoder frames (Whisper's stride-2 conv), and ceil(frames / encoder_pool) pooled tokens, or floor(...) when the
model's pooling drops an incomplete last group (``encoder_pool_tail="drop"``: Qwen2-Audio, Qwen2.5-Omni, whose
processors count ``((m - 1) // 2 + 1 - 2) // 2 + 1``, the same number). Presses then map
counts through ``Press.output_length``. `SpeechLM.encode` is tested to produce exactly these counts.
"""

from __future__ import annotations

import math

from speechpress.model.config import SpeechLMConfig


def window_token_counts(num_samples: int, config: SpeechLMConfig) -> list[int]:
    per_window = int(round(config.window_seconds * config.sample_rate))
    counts = []
    for start in range(0, max(num_samples, 1), per_window):
        samples = min(per_window, num_samples - start)
        counts.append(tokens_for_mel_frames(math.ceil(samples / config.hop_length), config))
    return counts


def encoder_frames_for_mel_frames(mel_frames: int) -> int:
    """Frames out of Whisper's stride-2 convolution."""
    return (mel_frames - 1) // 2 + 1


def tokens_for_mel_frames(mel_frames: int, config: SpeechLMConfig) -> int:
    """Tokens one window with ``mel_frames`` valid mel frames hands to the press chain (may be 0 in "drop" mode)."""
    frames = encoder_frames_for_mel_frames(mel_frames)
    if config.encoder_pool_tail == "drop":
        return frames // config.encoder_pool
    return math.ceil(frames / config.encoder_pool)


def audio_token_count(num_samples: int, config: SpeechLMConfig) -> int:
    """Tokens reaching the press chain for ``num_samples`` samples at the config's sample rate."""
    return sum(window_token_counts(num_samples, config))


def chain_token_counts(n_tokens: int, duration: float, chain) -> list[int]:
    """Token count after each press of ``chain`` (a list of Press objects)."""
    counts = []
    for press in chain:
        n_tokens = press.output_length(n_tokens, duration)
        counts.append(n_tokens)
    return counts


def window_token_spans(window_start: float, valid_mel_frames: int, n_tokens: int, config: SpeechLMConfig, duration: float):
    """Time spans [n_tokens, 2] (seconds, float64) of one window's pooled tokens: each covers its encoder frames
    (1 / frames_per_second each), the last clamped to the recording's end."""
    import torch

    from speechpress.presses.base import group_spans

    n = encoder_frames_for_mel_frames(valid_mel_frames)
    step = 1.0 / config.frames_per_second
    starts = window_start + torch.arange(n, dtype=torch.float64) * step
    frame_spans = torch.stack([starts, torch.clamp(starts + step, max=duration)], dim=-1)
    first = torch.arange(n_tokens) * config.encoder_pool
    return group_spans(frame_spans, first, torch.clamp(first + config.encoder_pool, max=n))

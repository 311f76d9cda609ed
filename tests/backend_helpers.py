"""The reference side of backend parity tests: what the transformers processors feed their own models."""

from __future__ import annotations

import numpy as np
import torch
from transformers import WhisperFeatureExtractor


def reference_inputs(samples: np.ndarray, prefix: list[int], suffix: list[int], audio_id: int):
    """Each 30 s segment's log-mel (WhisperFeatureExtractor, padded to 30 s, with its attention mask) and input ids
    with the audio placeholder expanded to the processor's count, ((m - 1) // 2 + 1 - 2) // 2 + 1 per segment."""
    segments = [samples[i : i + 480000] for i in range(0, len(samples), 480000)]
    fe = WhisperFeatureExtractor(feature_size=128)
    feats = fe(segments, sampling_rate=16000, padding="max_length", return_attention_mask=True, return_tensors="pt")
    mel = feats["attention_mask"].sum(-1)
    counts = (((mel - 1) // 2 + 1) - 2) // 2 + 1
    ids = prefix + [audio_id] * int(counts.sum()) + suffix
    return torch.tensor([ids]), feats["input_features"], feats["attention_mask"], int(counts.sum())

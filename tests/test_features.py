import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from speechpress.features import iter_feature_windows, num_windows

from helpers import speech


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("seconds", [7.3, 30.0])
def test_matches_whisper_feature_extractor(n_mels, seconds):
    x = speech(seconds)
    ref = WhisperFeatureExtractor(feature_size=n_mels)(
        x, sampling_rate=16000, return_tensors="np", padding="max_length", return_attention_mask=True
    )
    (window,) = next(iter_feature_windows(x, n_mels=n_mels))
    assert window.features.shape == (n_mels, 3000)
    assert np.abs(ref["input_features"][0] - window.features.numpy()).max() < 1e-4
    assert window.valid_frames == int(ref["attention_mask"].sum())


def test_windows_cover_everything_and_match_per_window_extraction():
    x = speech(65.0)
    fe = WhisperFeatureExtractor(feature_size=80)
    windows = [w for batch in iter_feature_windows(x, n_mels=80, batch_windows=2) for w in batch]
    assert len(windows) == num_windows(len(x)) == 3
    assert [w.start for w in windows] == [0.0, 30.0, 60.0]
    assert sum(w.valid_samples for w in windows) == len(x)
    assert windows[-1].valid_frames == 500  # 5 s * 100 frames/s
    third = fe(x[960000:], sampling_rate=16000, return_tensors="np", padding="max_length")["input_features"][0]
    assert np.abs(third - windows[2].features.numpy()).max() < 1e-4


def test_batches_bound_memory_by_window_count():
    x = np.zeros(16000 * 95, np.float32)
    sizes = [len(b) for b in iter_feature_windows(torch.from_numpy(x), batch_windows=3)]
    assert sizes == [3, 1]

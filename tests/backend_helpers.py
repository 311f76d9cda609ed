"""Tiny random-weight transformers checkpoints (Qwen2-Audio, Qwen2.5-Omni thinker) saved like real ones, with
their reference forward for parity tests."""

from __future__ import annotations

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from speechpress.model.tokenizer import build_byte_tokenizer

AUDIO_ENCODER = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=128,
                     max_source_positions=1500)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=32768)


def qwen2_audio_tokenizer():
    from transformers.models.qwen2_audio.processing_qwen2_audio import Qwen2AudioProcessor

    tok = build_byte_tokenizer()
    tok.chat_template = Qwen2AudioProcessor.default_chat_template.fget(None)  # the published Qwen2-Audio template
    return tok


def build_qwen2_audio(directory, seed: int = 0):
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    tok = qwen2_audio_tokenizer()
    config = Qwen2AudioConfig(
        audio_config=dict(model_type="qwen2_audio_encoder", **AUDIO_ENCODER),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), **TEXT),
        audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    WhisperFeatureExtractor(feature_size=128).save_pretrained(directory)
    return model


def omni_thinker_config(tok):
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniThinkerConfig

    return Qwen2_5OmniThinkerConfig(
        audio_config=dict(**AUDIO_ENCODER, output_dim=TEXT["hidden_size"], n_window=100),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=TEXT["hidden_size"],
                           fullatt_block_indexes=[0]),
        text_config=dict(vocab_size=len(tok), rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 1, 1]}, **TEXT),
        audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"),
        audio_start_token_id=tok.convert_tokens_to_ids("<|audio_bos|>"),
        audio_end_token_id=tok.convert_tokens_to_ids("<|audio_eos|>"),
    )


def build_omni_thinker(directory, seed: int = 0, full: bool = False):
    """A thinker checkpoint, or (``full``) a whole Qwen2.5-Omni checkpoint without talker weights."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration, Qwen2_5OmniThinkerForConditionalGeneration

    tok = build_byte_tokenizer()
    thinker_config = omni_thinker_config(tok)
    torch.manual_seed(seed)
    if full:
        model = Qwen2_5OmniForConditionalGeneration(Qwen2_5OmniConfig(thinker_config=thinker_config.to_dict(), enable_audio_output=False)).eval()
    else:
        model = Qwen2_5OmniThinkerForConditionalGeneration(thinker_config).eval()
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    WhisperFeatureExtractor(feature_size=128).save_pretrained(directory)
    if full:  # real Omni checkpoints ship the talker's speaker table, which from_pretrained insists on
        torch.save({}, f"{directory}/spk_dict.pt")
    return model


def reference_inputs(samples: np.ndarray, prefix: list[int], suffix: list[int], audio_id: int):
    """What the transformers processors build: each 30 s segment's log-mel (WhisperFeatureExtractor, padded to
    30 s, with its attention mask) and input ids with the audio placeholder expanded to the processor's count."""
    segments = [samples[i : i + 480000] for i in range(0, len(samples), 480000)]
    fe = WhisperFeatureExtractor(feature_size=128)
    feats = fe(segments, sampling_rate=16000, padding="max_length", return_attention_mask=True, return_tensors="pt")
    mel = feats["attention_mask"].sum(-1)
    counts = (((mel - 1) // 2 + 1) - 2) // 2 + 1
    ids = prefix + [audio_id] * int(counts.sum()) + suffix
    return torch.tensor([ids]), feats["input_features"], feats["attention_mask"], int(counts.sum())

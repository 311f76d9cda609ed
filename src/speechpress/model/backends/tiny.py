"""Tiny random-weight Qwen2-Audio and Qwen2.5-Omni checkpoints, saved exactly like real ones (transformers
config and safetensors, tokenizer with chat template, feature-extractor settings).

They let every backend path run with no download: the tests' parity checks, `speechpress init-model --backend`,
and the backend benchmarks. Their answers are gibberish by design.
"""

from __future__ import annotations

from pathlib import Path

import torch

from speechpress.model.tokenizer import build_byte_tokenizer

AUDIO_ENCODER = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=128,
                     max_source_positions=1500)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=32768)


def _finish(model, tokenizer, directory) -> None:
    from transformers import WhisperFeatureExtractor

    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    WhisperFeatureExtractor(feature_size=AUDIO_ENCODER["num_mel_bins"]).save_pretrained(str(directory))


def build_tiny_qwen2_audio(directory: str | Path, seed: int = 0):
    """A Qwen2AudioForConditionalGeneration with Qwen2-Audio's published chat template; returns the model."""
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration
    from transformers.models.qwen2_audio.processing_qwen2_audio import Qwen2AudioProcessor

    tok = build_byte_tokenizer()
    tok.chat_template = Qwen2AudioProcessor.default_chat_template.fget(None)
    config = Qwen2AudioConfig(
        audio_config=dict(model_type="qwen2_audio_encoder", **AUDIO_ENCODER),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), **TEXT),
        audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    _finish(model, tok, directory)
    return model


def build_tiny_omni(directory: str | Path, seed: int = 0, full: bool = False):
    """A Qwen2.5-Omni thinker checkpoint, or (``full``) a whole Qwen2.5-Omni checkpoint without the talker."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration, Qwen2_5OmniThinkerForConditionalGeneration
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniThinkerConfig

    tok = build_byte_tokenizer()
    thinker_config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(**AUDIO_ENCODER, output_dim=TEXT["hidden_size"], n_window=100),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=TEXT["hidden_size"],
                           fullatt_block_indexes=[0]),
        text_config=dict(vocab_size=len(tok), rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]},
                         **TEXT),
        audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"),
        audio_start_token_id=tok.convert_tokens_to_ids("<|audio_bos|>"),
        audio_end_token_id=tok.convert_tokens_to_ids("<|audio_eos|>"),
    )
    torch.manual_seed(seed)
    if full:
        config = Qwen2_5OmniConfig(thinker_config=thinker_config.to_dict(), enable_audio_output=False)
        model = Qwen2_5OmniForConditionalGeneration(config).eval()
    else:
        model = Qwen2_5OmniThinkerForConditionalGeneration(thinker_config).eval()
    _finish(model, tok, directory)
    if full:  # real Omni checkpoints ship the talker's speaker table, which from_pretrained insists on
        torch.save({}, Path(directory) / "spk_dict.pt")
    return model


TINY_BUILDERS = {"qwen2_audio": build_tiny_qwen2_audio, "qwen2_5_omni": build_tiny_omni}

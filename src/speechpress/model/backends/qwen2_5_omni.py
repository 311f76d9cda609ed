"""The Qwen2.5-Omni thinker (text output) as a SpeechLM.

The thinker's audio tower already ends in its own projection to the LLM width, so the projector is the identity
and encoder-space presses act on LLM-width tokens. The tower attends within 2 s blocks (``n_window``), so 30 s
windows change nothing it computes except at the edge of the last window; windows are still used so memory
stays bounded. For audio alone the thinker's multimodal RoPE gives every token the same position on its three
axes, which is ordinary 1-D RoPE: SpeechLM's explicit 1-D ``position_ids`` are expanded by the text model.
Loading a full Qwen2.5-Omni checkpoint builds the thinker only (``enable_audio_output=False``: no talker), and
``save_pretrained`` writes a thinker checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from speechpress.errors import ModelLoadError
from speechpress.model.backends.base import (
    CausalLMView,
    encoder_config_dict,
    attn_kwargs,
    finish_loading,
    load_tokenizer,
    special_tokens,
    stop_ids,
    text_config_dict,
    torch_dtype,
)
from speechpress.model.config import SpeechLMConfig
from speechpress.model.lengths import tokens_for_mel_frames
from speechpress.model.speechlm import SpeechLM

MODEL_TYPES = ("qwen2_5_omni", "qwen2_5_omni_thinker")


class Qwen25OmniSpeechLM(SpeechLM):
    """A Qwen2.5-Omni thinker behind the SpeechLM interface."""

    def __init__(self, thinker, tokenizer, system_prompt: str | None = None):
        cfg = thinker.config
        audio = cfg.audio_config
        config = SpeechLMConfig(
            encoder=encoder_config_dict(audio, output_dim=audio.output_dim),
            # Qwen2.5 decoders carry q/k/v biases, which the profiler counts through attention_bias.
            llm=text_config_dict(cfg.text_config, attention_bias=True),
            projector="none",  # the tower's own proj Linear(d_model -> output_dim)
            encoder_pool=2,
            encoder_pool_tail="drop",
            backend="qwen2_5_omni",
            system_prompt=system_prompt,
            **special_tokens(tokenizer, cfg.audio_token_id),
        )
        inner = thinker.model
        llm = CausalLMView(inner.language_model, thinker.lm_head, cfg.text_config)
        super().__init__(config, tokenizer, modules=(inner.audio_tower, nn.Identity(), llm))
        self.__dict__["hf_model"] = thinker  # saving writes a thinker checkpoint: the talker never sees audio tokens
        self.stop_token_ids = stop_ids(tokenizer, getattr(thinker, "generation_config", None))

    def encode_windows(self, features: torch.Tensor, valid_mel_frames: list[int]) -> list[torch.Tensor]:
        """The tower over the windows' valid frames laid end to end, as the thinker feeds several audios."""
        tower = self.encoder
        lengths = torch.tensor(valid_mel_frames, device=features.device)
        packed = torch.cat([f[:, :m] for f, m in zip(features, valid_mel_frames)], dim=1)
        after_cnn, _ = tower._get_feat_extract_output_lengths(lengths)
        hidden = tower(packed, feature_lens=lengths, aftercnn_lens=after_cnn).last_hidden_state
        return list(torch.split(hidden, [tokens_for_mel_frames(m, self.config) for m in valid_mel_frames]))

    def save_pretrained(self, directory) -> None:
        from speechpress.model.backends import save_backend_model

        save_backend_model(self, directory)

    @classmethod
    def load(cls, directory: Path, model_type: str, device=None, dtype=None, system_prompt: str | None = None,
             attn_implementation: str | None = None) -> "Qwen25OmniSpeechLM":
        from transformers import Qwen2_5OmniForConditionalGeneration, Qwen2_5OmniThinkerForConditionalGeneration

        tokenizer = load_tokenizer(directory)
        try:
            if model_type == "qwen2_5_omni":
                thinker = Qwen2_5OmniForConditionalGeneration.from_pretrained(
                    str(directory), dtype=torch_dtype(dtype), device_map=device, enable_audio_output=False,
                    **attn_kwargs(attn_implementation),
                ).thinker
            else:
                thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
                    str(directory), dtype=torch_dtype(dtype), device_map=device, **attn_kwargs(attn_implementation)
                )
        except Exception as err:
            raise ModelLoadError(f"{directory}: cannot load the Qwen2.5-Omni checkpoint ({type(err).__name__}: {err})") from None
        model = cls(thinker, tokenizer, system_prompt=system_prompt)
        return finish_loading(model, directory, device)

"""Qwen2-Audio (``Qwen2AudioForConditionalGeneration``) as a SpeechLM.

The checkpoint's audio tower, projector and Qwen2 decoder run unchanged; what speechpress adds is the windowing
(a recording of any length is cut into the 30 s windows the tower was trained on, each encoded on its own, its
padding masked exactly as transformers masks it), the press chain between tower and LLM, and the placeholder
count, which is the number of tokens that reach the LLM after compression (``model.lengths``), not the
processor's uncompressed count.
"""

from __future__ import annotations

from pathlib import Path

import torch

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
from speechpress.model.lengths import encoder_frames_for_mel_frames, tokens_for_mel_frames
from speechpress.model.speechlm import SpeechLM

MODEL_TYPES = ("qwen2_audio",)


class Qwen2AudioSpeechLM(SpeechLM):
    """A Qwen2-Audio checkpoint behind the SpeechLM interface (prefill / answer / ask / presses)."""

    def __init__(self, hf_model, tokenizer, system_prompt: str | None = None):
        hf_config = hf_model.config
        config = SpeechLMConfig(
            encoder=encoder_config_dict(hf_config.audio_config),
            llm=text_config_dict(hf_config.text_config),
            projector="linear",
            encoder_pool=2,  # the tower's AvgPool1d(2, 2)
            encoder_pool_tail="drop",
            backend="qwen2_audio",
            system_prompt=system_prompt,
            **special_tokens(tokenizer, hf_config.audio_token_id),
        )
        inner = hf_model.model
        llm = CausalLMView(inner.language_model, hf_model.lm_head, hf_config.text_config)
        super().__init__(config, tokenizer, modules=(inner.audio_tower, inner.multi_modal_projector, llm))
        self.__dict__["hf_model"] = hf_model  # not a submodule: its parameters are registered above
        self.stop_token_ids = stop_ids(tokenizer, getattr(hf_model, "generation_config", None))

    def encode_windows(self, features: torch.Tensor, valid_mel_frames: list[int]) -> list[torch.Tensor]:
        """The tower over a batch of 30 s windows with each window's padding masked, as transformers does."""
        from transformers.masking_utils import create_bidirectional_mask

        tower = self.encoder
        frames = features.shape[-1] // 2  # after the stride-2 convolution: 1500
        valid = torch.tensor([encoder_frames_for_mel_frames(m) for m in valid_mel_frames], device=features.device)
        mask_2d = (torch.arange(frames, device=features.device)[None] < valid[:, None]).long()
        dummy = torch.zeros(len(valid_mel_frames), frames, 1, dtype=self.dtype, device=features.device)
        mask = create_bidirectional_mask(config=tower.config, inputs_embeds=dummy, attention_mask=mask_2d)
        hidden = tower(features, attention_mask=mask).last_hidden_state
        return [h[: tokens_for_mel_frames(m, self.config)] for m, h in zip(valid_mel_frames, hidden)]

    def save_pretrained(self, directory) -> None:
        from speechpress.model.backends import save_backend_model

        save_backend_model(self, directory)

    @classmethod
    def load(cls, directory: Path, device=None, dtype=None, system_prompt: str | None = None,
             attn_implementation: str | None = None) -> "Qwen2AudioSpeechLM":
        from transformers import Qwen2AudioForConditionalGeneration
        from transformers.models.qwen2_audio.processing_qwen2_audio import Qwen2AudioProcessor

        tokenizer = load_tokenizer(directory, default_template=Qwen2AudioProcessor.default_chat_template.fget(None))
        try:
            hf_model = Qwen2AudioForConditionalGeneration.from_pretrained(
                str(directory), dtype=torch_dtype(dtype), device_map=device, **attn_kwargs(attn_implementation)
            )
        except Exception as err:
            raise ModelLoadError(f"{directory}: cannot load the Qwen2-Audio checkpoint ({type(err).__name__}: {err})") from None
        model = cls(hf_model, tokenizer, system_prompt=system_prompt)
        return finish_loading(model, directory, device)

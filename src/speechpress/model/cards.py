"""Real-size architecture cards (no weights), so cost can be computed for the models the papers use.

Each card is a :class:`SpeechLMConfig` written from published facts. Sources, abbreviated in the comments:
  [TF]  transformers 5.23 config defaults in site-packages (``Qwen2AudioEncoderConfig``, ``Qwen2Config``,
        ``Qwen2_5OmniAudioEncoderConfig`` / ``Qwen2_5OmniTextConfig``, ``Qwen3Config``).
  [HUB] the model's hub ``config.json`` as quoted by several public repositories' test fixtures (seen through the
        code search of this workplace, not fetched from the hub itself).
  [RN]  the project's research notes (kept outside this repository): peer projects section 2, pruning/HFQ/pooling
        methods sections B and D.
  [UNVERIFIED] taken from the task brief / general knowledge, not confirmed from a primary source here.

Only what changes cost is recorded: layer shapes, vocabulary, tied embeddings, the pooling before the LLM.
"""

from __future__ import annotations

from speechpress.errors import ConfigError
from speechpress.model.config import SpeechLMConfig

# Whisper-large-v3-shaped audio encoder, shared by Qwen2-Audio, the Qwen2.5-Omni thinker and FastSLM.
# [TF] Qwen2AudioEncoderConfig defaults and Qwen2AudioConfig's audio init_kwargs: 128 mels, 32 layers, d_model
# 1280, 20 heads, ffn 5120, max_source_positions 1500 (30 s at 50 frames/s); the same five numbers are the
# defaults of Qwen2_5OmniAudioEncoderConfig [TF]; FastSLM's encoder has them too [RN B].
WHISPER_LARGE_V3_ENCODER = dict(
    num_mel_bins=128,
    encoder_layers=32,
    encoder_attention_heads=20,
    encoder_ffn_dim=5120,
    d_model=1280,
    max_source_positions=1500,
)

QWEN2_AUDIO_7B = SpeechLMConfig(
    encoder=dict(WHISPER_LARGE_V3_ENCODER),
    # Qwen-7B text model. [HUB] Qwen/Qwen2-Audio-7B text_config sets intermediate_size 11008, vocab_size 156032,
    # max_position_embeddings 8192, rope_theta 10000, rms_norm_eps 1e-5 and leaves the rest to Qwen2Config's
    # defaults [TF]: hidden 4096, 32 layers, 32 heads, 32 kv heads (MHA), tie_word_embeddings False.
    llm=dict(
        model_type="qwen2",
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=11008,
        vocab_size=156032,
        max_position_embeddings=8192,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
    projector="linear",  # [RN 2.1] Qwen2AudioMultiModalProjector = one Linear(1280 -> 4096)
    encoder_pool=2,  # [RN 2.1] AvgPool1d(2, 2) after the encoder: 50 -> 25 tokens/s
    encoder_pool_tail="drop",  # [TF] AvgPool1d drops an odd last frame (processor: ((m-1)//2+1-2)//2+1 tokens)
    backend="qwen2_audio",
)

QWEN2_5_OMNI_7B = SpeechLMConfig(
    # Thinker only (the talker and token2wav do not see the audio tokens). [TF]/[RN 2.2]: same encoder shape,
    # avg_pooler AvgPool1d(2, 2) then proj -> 25 tokens/s (position_id_per_seconds 25). The encoder's 2 s
    # block-wise attention (n_window 100) is not modelled: the cost model uses 30 s windows of full attention,
    # which over-counts the encoder's attention FLOPs (a small share of its total).
    encoder=dict(WHISPER_LARGE_V3_ENCODER),
    # [TF] Qwen2_5OmniTextConfig defaults (= the 7B thinker) and [HUB] Qwen2.5-Omni-7B thinker text_config:
    # hidden 3584, 28 layers, 28 heads, 4 kv heads, intermediate 18944, vocab 152064, rope_theta 1e6.
    # tie_word_embeddings False: [UNVERIFIED] (Qwen2.5-7B's value; the transformers Omni text default is True).
    llm=dict(
        model_type="qwen2",
        hidden_size=3584,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        intermediate_size=18944,
        vocab_size=152064,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        tie_word_embeddings=False,
    ),
    projector="linear",  # the encoder's own proj Linear(1280 -> 3584) [TF]
    encoder_pool=2,
    encoder_pool_tail="drop",
    backend="qwen2_5_omni",
)

QWEN2_5_OMNI_3B = SpeechLMConfig(
    encoder=dict(WHISPER_LARGE_V3_ENCODER),  # [UNVERIFIED] that the 3B thinker keeps the 7B's audio encoder shape
    # Qwen2.5-3B shapes, thinker text_config of Qwen2.5-Omni-3B as quoted by public config fixtures [HUB]:
    # hidden 2048, 36 layers, 16 heads, 2 kv heads, head_dim 128, intermediate 11008, vocab 151936, rope_theta 1e6.
    # tie_word_embeddings True: [UNVERIFIED] (Qwen2.5-3B's value).
    llm=dict(
        model_type="qwen2",
        hidden_size=2048,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        intermediate_size=11008,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
    ),
    projector="linear",
    encoder_pool=2,
    encoder_pool_tail="drop",
    backend="qwen2_5_omni",
)

FASTSLM_QWEN3_4B = SpeechLMConfig(
    encoder=dict(WHISPER_LARGE_V3_ENCODER),  # [RN B] frozen Whisper-large-v3: 128 mels, 32 layers, 1280, 20 heads
    # [RN B] Qwen/Qwen3-4B, hidden 2560. Public Qwen3-4B config fixtures [HUB]: 36 layers, 32 heads, 8 kv heads,
    # head_dim 128 (so attention width 4096 != hidden), intermediate 9728, vocab 151936, tie_word_embeddings True,
    # rope_theta 1e6, max_position_embeddings 40960.
    llm=dict(
        model_type="qwen3",
        hidden_size=2560,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=9728,
        vocab_size=151936,
        max_position_embeddings=40960,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
    ),
    projector="linear",  # [RN B] llm_proj = Linear(1280 -> 2560), after the HFQ-Former
    # FastSLM feeds the 50 Hz frames straight to its HFQ-Former (no fixed pooling); the 1.67 tokens/s come
    # from the press: profile it with press "hfq".
    encoder_pool=1,
)

MODEL_CARDS: dict[str, SpeechLMConfig] = {
    "qwen2-audio-7b": QWEN2_AUDIO_7B,
    "qwen2.5-omni-3b": QWEN2_5_OMNI_3B,
    "qwen2.5-omni-7b": QWEN2_5_OMNI_7B,
    "fastslm-qwen3-4b": FASTSLM_QWEN3_4B,
}


def get_model_card(name: str) -> SpeechLMConfig:
    """The card called ``name`` (a fresh copy, so callers may edit it); unknown names list the known ones."""
    if name not in MODEL_CARDS:
        raise ConfigError(f"unknown model card {name!r}; known: {', '.join(sorted(MODEL_CARDS))}")
    return SpeechLMConfig.from_dict(MODEL_CARDS[name].to_dict(), source=f"model card {name}")

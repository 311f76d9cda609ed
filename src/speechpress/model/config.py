"""SpeechLMConfig: a speech LLM described by plain transformers config dicts, so it can be saved as JSON,
built at any size (tiny for tests, 7B for cost models) and loaded without code changes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from speechpress.errors import ConfigError


BACKEND_NAMES = ("speechpress", "qwen2_audio", "qwen2_5_omni")


@dataclass
class SpeechLMConfig:
    # transformers WhisperConfig kwargs for the encoder (d_model, encoder_layers, encoder_attention_heads,
    # encoder_ffn_dim, num_mel_bins, max_source_positions=1500 for 30 s windows).
    encoder: dict = field(default_factory=dict)
    # transformers config kwargs of the causal LM, with "model_type" (e.g. "qwen2", "qwen3").
    llm: dict = field(default_factory=dict)
    # "linear" (Qwen2-Audio) or "mlp" (two layers with GELU); "none" when the encoder already projects to the
    # LLM width (the Qwen2.5-Omni audio tower ends in its own Linear).
    projector: str = "linear"
    # Fixed average pooling of encoder frames inside the model, before any press
    # (Qwen2-Audio: 2, i.e. 50 -> 25 tokens/s). Presses then compress further.
    encoder_pool: int = 2
    # What pooling does with a window's last incomplete group of frames: "keep" averages it alone (speechpress
    # models), "drop" discards it (torch AvgPool1d, as in Qwen2-Audio and Qwen2.5-Omni). Token counts follow it.
    encoder_pool_tail: str = "keep"
    # How a group of ``encoder_pool`` frames becomes one token: "mean" averages them (Qwen2-Audio's AvgPool1d);
    # "stack" concatenates them (width x encoder_pool, as many adapter-based speech LLMs do), which keeps the
    # order inside the group for the projector to read. Token counts and spans are the same either way.
    encoder_pool_mode: str = "mean"
    # Who built the weights: "speechpress" (this package's own SpeechLM) or a transformers backend
    # ("qwen2_audio", "qwen2_5_omni"); see speechpress.model.backends.
    backend: str = "speechpress"
    window_seconds: float = 30.0
    sample_rate: int = 16000
    hop_length: int = 160
    # Special tokens the prompt uses around the audio.
    audio_bos: str = "<|audio_bos|>"
    audio_token: str = "<|AUDIO|>"
    audio_eos: str = "<|audio_eos|>"
    # None leaves the system turn to the chat template (Qwen2-Audio's adds its own default).
    system_prompt: str | None = "You are a helpful assistant that listens to recordings."
    # Trained presses stored with the model: name -> constructor kwargs (ratio / tokens_per_second / sizes).
    presses: dict = field(default_factory=dict)
    # Frozen pretrained parts this model references instead of storing: {"encoder"|"llm": {"source", "format",
    # "sha256"[, "vocab_size"]}} (speechpress.model.bases). Empty: every weight lives in the model directory.
    bases: dict = field(default_factory=dict)

    @property
    def num_mel_bins(self) -> int:
        return int(self.encoder.get("num_mel_bins", 80))

    @property
    def encoder_output_dim(self) -> int:
        """Width of the tokens the encoder hands to encoder-space presses (``output_dim`` when it projects itself)."""
        if "output_dim" in self.encoder:
            return int(self.encoder["output_dim"])
        return int(self.encoder["d_model"]) * (self.encoder_pool if self.encoder_pool_mode == "stack" else 1)

    @property
    def frames_per_second(self) -> float:
        """Encoder output frames per second of audio (Whisper: 100 mel frames/s, conv stride 2 -> 50)."""
        return self.sample_rate / self.hop_length / 2

    @property
    def tokens_per_second(self) -> float:
        """Audio tokens per second that reach the press chain (after ``encoder_pool``)."""
        return self.frames_per_second / self.encoder_pool

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "SpeechLMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}")
        cfg = cls(**data)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        if "model_type" not in self.llm:
            raise ConfigError(f"{source}: llm needs a model_type (e.g. 'qwen2')")
        if self.projector not in ("linear", "mlp", "none"):
            raise ConfigError(f"{source}: projector must be 'linear', 'mlp' or 'none', got {self.projector!r}")
        if self.encoder_pool_mode not in ("mean", "stack"):
            raise ConfigError(f"{source}: encoder_pool_mode must be 'mean' or 'stack', got {self.encoder_pool_mode!r}")
        if self.encoder_pool_tail not in ("keep", "drop"):
            raise ConfigError(f"{source}: encoder_pool_tail must be 'keep' or 'drop', got {self.encoder_pool_tail!r}")
        if self.backend not in BACKEND_NAMES:
            raise ConfigError(f"{source}: backend must be one of {', '.join(BACKEND_NAMES)}, got {self.backend!r}")
        if not isinstance(self.encoder_pool, int) or self.encoder_pool < 1:
            raise ConfigError(f"{source}: encoder_pool must be a positive integer")
        for role, base in self.bases.items():
            if role not in ("encoder", "llm") or not isinstance(base, dict) or not {"source", "sha256"} <= set(base):
                raise ConfigError(f"{source}: bases.{role} must be encoder or llm, with a source and a sha256")

    def save(self, path: str | Path) -> None:
        from speechpress.io import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "SpeechLMConfig":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot read model config: {err}") from None
        return cls.from_dict(data, source=str(path))


# Named sizes. "tiny" is what tests and `speechpress init-model` use; real-size cards for cost models live in
# speechpress.model.cards.
TINY = SpeechLMConfig(
    encoder=dict(
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=128,
        num_mel_bins=80,
        max_source_positions=1500,
    ),
    llm=dict(
        model_type="qwen2",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=131072,
        rope_theta=10000.0,
        tie_word_embeddings=True,
    ),
)

NAMED_CONFIGS = {"tiny": TINY}


def named_or_file_config(spec: str) -> SpeechLMConfig:
    """A named size ("tiny") or a SpeechLMConfig JSON/YAML file: what `init-model --config`, `profile
    --model-config` and a training run's `model.init` accept besides model directories."""
    if spec in NAMED_CONFIGS:
        return NAMED_CONFIGS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"{spec}: not a named config ({', '.join(NAMED_CONFIGS)}) and no such file")
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot parse ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of SpeechLMConfig fields")
    return SpeechLMConfig.from_dict(data, source=str(path))

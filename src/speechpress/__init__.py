"""speechpress: long-form speech understanding for speech LLMs by compressing audio tokens."""

__version__ = "0.1.0"

from speechpress.errors import (  # noqa: E402
    AudioError,
    ConfigError,
    DataError,
    ModelLoadError,
    PressError,
    SpeechpressError,
)

__all__ = [
    "AudioError",
    "ConfigError",
    "DataError",
    "ModelLoadError",
    "PressError",
    "SpeechpressError",
    "__version__",
]

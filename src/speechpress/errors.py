"""One error family, so the CLI can turn every expected failure into `error: ...` and exit code 2."""


class SpeechpressError(Exception):
    """Base class of every error speechpress raises on purpose (bad input, bad config, bad model)."""


class AudioError(SpeechpressError):
    """An audio input that cannot be decoded or is not usable speech (empty, NaN, not audio, ...)."""


class ConfigError(SpeechpressError):
    """A configuration or command-line value that is out of range or unknown."""


class PressError(SpeechpressError):
    """A press that does not exist, or was asked for an impossible ratio."""


class ModelLoadError(SpeechpressError):
    """A model directory or hub id that does not hold a loadable speechpress model."""


class DataError(SpeechpressError):
    """A manifest, benchmark file or dataset row that is malformed or points at missing data."""

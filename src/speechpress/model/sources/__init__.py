"""Pretrained base parts (Whisper encoders, causal LMs) from transformers directories, hub ids, CTranslate2 and
GGUF files or the Python packages that ship them, converted once into a checksummed transformers cache."""

from speechpress.model.sources.resolve import KNOWN_PARTS, BasePart, cache_root, resolve_base

__all__ = ["KNOWN_PARTS", "BasePart", "cache_root", "resolve_base"]

"""The speech LLM: Whisper-style encoder per 30 s window, a press chain, a projector and a causal LM."""

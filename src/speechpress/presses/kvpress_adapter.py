"""NVIDIA kvpress' own presses, when the installed kvpress and transformers work together.

``kvpress:4`` with ``--press-option press=SnapKVPress`` wraps ``kvpress.SnapKVPress(compression_ratio=0.75)``
(the fraction removed, converted from the ratio by ``ratio.py``) around the prefill, as kvpress' pipeline does. What
differs from the native presses (``knorm``, ``streamingllm``, ``snapkv``, ``tova``): kvpress compresses the whole
prefilled context, the prompt prefix included, and positions are whatever kvpress leaves.

Compatibility is checked before anything runs: kvpress 0.5.x declares ``transformers<5.3`` and its attention hook
reads a ``cache_position`` argument that transformers 5.4+ no longer passes, so on this project's transformers it is
refused with that reason instead of failing inside a forward.
"""

from __future__ import annotations

import importlib.util

from speechpress.errors import PressError
from speechpress.kv_cache import KVState, full_prefill
from speechpress.presses.base import Press
from speechpress.presses.registry import register_press
from speechpress.ratio import fraction_removed_from_ratio


def kvpress_problem() -> str | None:
    """Why kvpress cannot run here (not installed, or its declared transformers range excludes the installed
    one), or None."""
    if importlib.util.find_spec("kvpress") is None:
        return "kvpress is not installed (pip install kvpress)"
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement
    from packaging.version import Version

    try:
        wanted = [Requirement(r) for r in requires("kvpress") or []]
        have = Version(version("transformers"))
        kv = version("kvpress")
    except PackageNotFoundError:
        return "kvpress is importable but not installed as a distribution: its transformers range cannot be checked"
    for req in wanted:
        if req.name == "transformers" and req.marker is None and have not in req.specifier:
            return (
                f"kvpress {kv} requires transformers{req.specifier} but {have} is installed (its attention hook reads "
                "cache_position, which transformers 5.4+ no longer passes); use the native knorm, streamingllm, snapkv "
                "or tova presses, or an environment with a compatible pair"
            )
    return None


@register_press
class KVPressAdapter(Press):
    name = "kvpress"
    description = "any of NVIDIA kvpress' presses around the prefill (needs a kvpress release compatible with transformers)"
    paper = "kvpress as it is: it compresses the whole context, the prompt prefix included"
    space = "kv"

    @classmethod
    def unavailable(cls) -> str | None:
        return kvpress_problem()

    def __init__(self, ratio: float | None = None, tokens_per_second: float | None = None, *, press: str = "KnormPress",
                 options: dict | None = None):
        super().__init__(ratio, tokens_per_second)
        if tokens_per_second is not None:
            raise PressError("kvpress presses take a compression ratio, not a tokens-per-second target")
        problem = kvpress_problem()
        if problem:
            raise PressError(problem)
        import kvpress

        cls = getattr(kvpress, str(press), None)
        if not isinstance(cls, type) or not str(press).endswith("Press"):
            known = sorted(n for n in dir(kvpress) if n.endswith("Press") and n != "BasePress")
            raise PressError(f"kvpress has no press {press!r}; it has: {', '.join(known)}")
        fraction = fraction_removed_from_ratio(1.0 if ratio is None else float(ratio))
        self.press_name, self.kvpress = str(press), cls(compression_ratio=fraction, **(options or {}))

    def forward(self, tokens, context=None):
        raise PressError("the 'kvpress' press acts on the LLM's KV cache during prefill, not on token sequences")

    def prefill(self, llm, prefix_embeds, audio_embeds, *, duration_s=None, audio_spans=None) -> KVState:
        with self.kvpress(llm):
            state = full_prefill(llm, prefix_embeds, audio_embeds)
        state.kept_tokens = state.cache_length()
        return state

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, press={self.press_name}"

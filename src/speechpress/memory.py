"""Peak memory of this process, the figure every result row reports (CUDA allocator peak on GPU)."""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory_bytes(device: str | torch.device | None = None) -> int:
    """Peak CUDA memory allocated when ``device`` is a CUDA device, else the process' peak resident set size."""
    if device is not None and torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)

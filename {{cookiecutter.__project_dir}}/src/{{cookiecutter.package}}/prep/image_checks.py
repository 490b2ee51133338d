"""Image checks made before training or a report: a cheap header check, a full decode of a
folder's listed images that remembers the files it verified, and the search for identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import PIL
from PIL import Image

from ..images import (
    MAX_PIXELS,
    bomb_warnings_ignored,
    check_pixel_count,
    decode,
    errors_named,
    file_digest,
)
from ..utils.atomic import write_json
from ..utils.errors import DataError, DiskFullError
from .cache import read_manifest, stat_key
from ..utils.hardware import available_cores

STAMP_MIN_FILES = 500  # smaller folders are verified on every run: it takes seconds
PROGRESS_MIN_FILES = 200
DECODER = f"Pillow {PIL.__version__}, MAX_PIXELS {MAX_PIXELS}"
# Stamps: (folder under the user's cache, what must match for a stamp to be trusted).
VERIFIED = ("verified", DECODER)
DIGESTS = ("digests", "blake2b-160")
T = TypeVar("T")


def on_all_cores(job: Callable[[Path], T], paths: Sequence[Path], description: str) -> list[T]:
    """``job`` of every path, one thread per available core (Pillow and hashlib release the
    GIL), with a progress bar when the list is long."""
    # Here, not at the top: the offline inference path (a Kaggle notebook) imports the package.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with (
        Progress(*columns, disable=len(paths) < PROGRESS_MIN_FILES) as bar,
        ThreadPoolExecutor(max_workers=available_cores()) as pool,
    ):
        return list(bar.track(pool.map(job, paths), len(paths), description=description))


def readable_digest(path: Path) -> str:
    """``file_digest``, with ``DataError`` naming the file if it cannot be read."""
    try:
        return file_digest(path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DataError(f"{path}: cannot be read to look for identical images ({reason})") from None


def duplicate_groups(
    folder: Path, names: Sequence[str], cache_dir: Path | None = None
) -> list[list[str]]:
    """Groups (two files or more) of ``names`` in ``folder`` whose bytes are identical; with a
    ``prepare`` cache, by the sources' digests in its manifest (no file is read)."""
    if cache_dir is not None:
        files = read_manifest(cache_dir).files
        digests = [files[f"{folder.name}/{name}"]["digest"] for name in names]
    else:
        digests = remembered_digests(folder, names)
    by_digest: dict[str, list[str]] = {}
    for name, digest in zip(names, digests):
        by_digest.setdefault(digest, []).append(name)
    return [sorted(group) for group in by_digest.values() if len(group) > 1]


def remembered_digests(folder: Path, names: Sequence[str]) -> list[str]:
    """``readable_digest`` of each listed file; in large folders, files unchanged since the last
    search (same size and modification time) reuse the digest kept in a stamp, so a second
    ``fit`` or ``cv`` on the same images reads none of them again."""
    known = _read_stamp(folder, DIGESTS)
    stats = {name: stat_key(folder / name) for name in names}
    todo = [name for name in names if not stats[name] or known.get(name, [0])[:-1] != stats[name]]
    paths = [folder / name for name in todo]
    fresh = on_all_cores(readable_digest, paths, f"looking for identical {folder.name}")
    known.update({name: [*(stats[name] or []), digest] for name, digest in zip(todo, fresh)})
    if todo and len(names) >= STAMP_MIN_FILES:
        _write_stamp(folder, {name: known[name] for name in names}, DIGESTS)
    return [known[name][-1] for name in names]


def check_image_header(path: Path) -> tuple[int, int]:
    """Cheaply confirm that ``path`` exists, starts like an image and is not too large; return
    the ``(width, height)`` its header declares."""
    with (
        errors_named(path, "not a readable image"),
        bomb_warnings_ignored(),
        Image.open(path) as image,
    ):
        check_pixel_count(path, image.size)
        return image.size


def verify_image(path: Path) -> str | None:
    """Decode ``path`` completely (the smallest JPEG scale still reads every byte); the error
    line, or None if fine. Call it inside ``bomb_warnings_ignored``."""
    try:
        decode(path, 1, "not a readable image")
    except DataError as exc:
        return str(exc)
    return None


def find_unreadable(folder: Path, names: Sequence[str], label: str = "") -> dict[str, str]:
    """Decode every listed image of ``folder``; map each one that fails to its error line. Large
    folders skip files verified before by the same Pillow and unchanged since (``stamp_path``)."""
    stats = {name: stat_key(folder / name) for name in names}
    remember = len(names) >= STAMP_MIN_FILES
    verified = _read_stamp(folder) if remember else {}
    todo = [name for name in names if stats[name] is None or verified.get(name) != stats[name]]
    failures: dict[str, str] = {}
    with bomb_warnings_ignored():
        paths = [folder / name for name in todo]
        reasons = on_all_cores(verify_image, paths, f"decoding {label or folder.name}")
    for name, reason in zip(todo, reasons):
        key = stats[name]
        if reason is not None:
            failures[name] = reason
            verified.pop(name, None)
        elif key is not None:  # a file that could not be stat'ed is verified again next run
            verified[name] = key
    if remember and todo:
        _write_stamp(folder, {name: verified[name] for name in names if name in verified})
    return failures


def stamp_path(folder: Path, kind: tuple[str, str] = VERIFIED) -> Path:
    """The stamp of ``folder`` (``VERIFIED`` files or ``DIGESTS``), under ``$XDG_CACHE_HOME``
    or ``~/.cache`` (the data folder may be read-only)."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.blake2b(str(folder.resolve()).encode(), digest_size=10).hexdigest()
    return cache_home / __name__.split(".")[0] / kind[0] / f"{key}.json"


def _read_stamp(folder: Path, kind: tuple[str, str] = VERIFIED) -> dict[str, list]:
    """Each file's ``[size, mtime_ns, ...]`` as last recorded, or nothing if the stamp is absent,
    unusable or written by another decoder or digest."""
    try:
        stamp = json.loads(stamp_path(folder, kind).read_text())
        if stamp["folder"] != str(folder.resolve()) or stamp["decoder"] != kind[1]:
            return {}
        return {str(name): list(key) for name, key in stamp["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_stamp(folder: Path, files: dict[str, list], kind: tuple[str, str] = VERIFIED) -> None:
    """Replace the stamp atomically; a cache folder that cannot be written just means no stamp."""
    stamp = {"folder": str(folder.resolve()), "decoder": kind[1], "files": files}
    with suppress(OSError, DiskFullError):
        write_json(stamp_path(folder, kind), stamp, indent=None)

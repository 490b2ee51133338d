"""Image checks before training or a report: a cheap header check, a full decode of the listed
images that remembers the files it verified, the search for identical files, and ``remembered``,
which keeps the result of a job per unchanged file (``prep.duplicates`` remembers hashes)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import PIL
from PIL import Image

from ..images import MAX_PIXELS, bomb_warnings_ignored, check_pixel_count, decode, errors_named
from ..images import file_digest
from ..utils.atomic import write_json
from ..utils.errors import DataError, DiskFullError
from .cache import read_manifest, stat_key
from ..utils.hardware import available_cores

if TYPE_CHECKING:
    from rich.progress import Progress

STAMP_MIN_FILES = 500  # smaller folders are verified on every run: it takes seconds
PROGRESS_MIN_FILES = 200
DECODER = f"Pillow {PIL.__version__}, MAX_PIXELS {MAX_PIXELS}"
# Stamps: (folder under the user's cache, what must match for it to be trusted, progress label).
VERIFIED = ("verified", DECODER, "decoding")
DIGESTS = ("digests", "blake2b-160", "looking for identical")
T = TypeVar("T")


def progress_bar(disable: bool) -> Progress:
    """The progress bar of a long job: its description, the bar, done/total, time left."""
    # Here, not at the top: the offline inference path (a Kaggle notebook) imports the package.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, disable=disable)


def on_all_cores(job: Callable[[Path], T], paths: Sequence[Path], description: str) -> list[T]:
    """``job`` of every path, one thread per available core (Pillow and hashlib release the
    GIL), with a progress bar when the list is long."""
    with (
        progress_bar(disable=len(paths) < PROGRESS_MIN_FILES) as bar,
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
    ``prepare`` cache, by the sources' digests in its manifest (no file is read). Large folders
    reuse the digests of files unchanged since the last search (``remembered``)."""
    if cache_dir is not None:
        files = read_manifest(cache_dir).files
        digests = [files[f"{folder.name}/{name}"]["digest"] for name in names]
    else:
        known, fresh = remembered(folder, names, DIGESTS, readable_digest, lambda d: [d])
        digests = [fresh[name] if name in fresh else known[name][-1] for name in names]
    by_digest: dict[str, list[str]] = {}
    for name, digest in zip(names, digests):
        by_digest.setdefault(digest, []).append(name)
    return [sorted(group) for group in by_digest.values() if len(group) > 1]


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


def find_unreadable(folder: Path, names: Sequence[str]) -> dict[str, str]:
    """Decode every listed image of ``folder``; map each one that fails to its error line. Large
    folders skip files verified before by the same Pillow and unchanged since (``remembered``)."""
    with bomb_warnings_ignored():
        _, fresh = remembered(folder, names, VERIFIED, verify_image, lambda r: None if r else [])
    return {name: reason for name, reason in fresh.items() if reason is not None}


def remembered(
    folder: Path,
    names: Sequence[str],
    kind: tuple[str, str, str],
    job: Callable[[Path], T],
    kept: Callable[[T], list | None],
) -> tuple[dict[str, list], dict[str, T]]:
    """The stamp ``kind``'s ``[size, mtime_ns, *kept(result)]`` of the listed files, and ``job``
    of each file changed since (``kept`` None: not remembered). The stamp of a large folder is
    written back (``stamp_path``): a second ``fit`` or ``cv`` reads no unchanged file again."""
    path, folder_key = stamp_path(folder, kind), str(folder.resolve())
    try:
        stamp = json.loads(path.read_text())
        trusted = stamp["folder"] == folder_key and stamp["decoder"] == kind[1]
        known = {str(name): list(key) for name, key in stamp["files"].items()} if trusted else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # absent or unusable
        known = {}
    stats = {name: stat_key(folder / name) for name in names}
    todo = [name for name in names if not stats[name] or known.get(name, [])[:2] != stats[name]]
    results = on_all_cores(job, [folder / name for name in todo], f"{kind[2]} {folder.name}")
    for name, result in zip(todo, results):
        extra, key = kept(result), stats[name]
        if extra is None or key is None:  # a file that could not be stat'ed is read again
            known.pop(name, None)
        else:
            known[name] = [*key, *extra]
    if todo and len(names) >= STAMP_MIN_FILES:
        files = {name: known[name] for name in names if name in known}
        stamp = {"folder": folder_key, "decoder": kind[1], "files": files}
        with suppress(OSError, DiskFullError):  # a cache folder that cannot be written: no stamp
            write_json(path, stamp, indent=None)
    return known, dict(zip(todo, results))


def stamp_path(folder: Path, kind: tuple[str, str, str] = VERIFIED) -> Path:
    """The stamp of ``folder`` (``VERIFIED`` files, ``DIGESTS``, perceptual hashes), under
    ``$XDG_CACHE_HOME`` or ``~/.cache`` (the data folder may be read-only)."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.blake2b(str(folder.resolve()).encode(), digest_size=10).hexdigest()
    return cache_home / __name__.split(".")[0] / kind[0] / f"{key}.json"

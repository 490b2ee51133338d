"""Image decoding: any file Pillow reads becomes an upright 8-bit RGB image, decoded no larger
than needed, and hostile files fail with one line naming them.

JPEGs are decoded with DCT scaling (``Image.draft``) to the smallest power-of-two reduction that
still covers the requested size, which is what makes 4000x2672 competition photos cheap to read.
EXIF orientation is applied. Every mode becomes RGB with its full range mapped onto 0..255:
16-bit samples (``I;16*`` and ``I``, which Pillow uses for 16-bit PNG, TIFF and PGM files) are
divided by 257, 32-bit float samples (``F``) are read as 0.0..1.0, transparent pixels are laid on
white.

An image declaring more than ``MAX_PIXELS`` pixels is refused from its header, before anything is
decoded: 64 million pixels is six times a Plant Pathology 2021 photo (4000x2672 = 10.7 MP) and
more than any current full-frame camera writes, while its RGB decode (192 MB per loader worker)
still fits in memory. Raise it here if your images are larger. Pillow's own decompression-bomb
limit (``Image.MAX_IMAGE_PIXELS``) is higher, so its warning never gets as far as a decode.

``find_unreadable`` decodes a whole folder's worth of listed images before training, on all cores,
and remembers the files it verified so the next run does not pay again.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps

from .utils.atomic import write_json
from .utils.errors import DataError, DiskFullError
from .utils.hardware import available_cores

MAX_PIXELS = 64_000_000
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# What Pillow raises for files it cannot parse or decode (its decoders are not uniform).
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    Image.DecompressionBombError,
)
# Folders with fewer listed images are verified on every run: it takes seconds, so no stamp file.
STAMP_MIN_FILES = 500
PROGRESS_MIN_FILES = 200


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (see the module docstring for the scaling rules)."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        image = _to_8bit_gray(image)
    if "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """16-bit integer samples divided by 257, float samples 0.0..1.0 scaled by 255 (clipped)."""
    samples = np.asarray(image)
    if image.mode == "F":
        scaled = np.nan_to_num(samples, nan=0.0).clip(0.0, 1.0) * 255.0 + 0.5
    else:
        scaled = (samples.clip(0, 65535).astype(np.uint32) * 255 + 32767) // 65535
    return Image.fromarray(scaled.astype(np.uint8))


@contextmanager
def bomb_warnings_ignored() -> Iterator[None]:
    """Silence Pillow's decompression-bomb warning: ``MAX_PIXELS`` refuses those files anyway.

    ``warnings.catch_warnings`` changes process-wide state: enter it in one thread only (worker
    threads of ``find_unreadable`` run inside the main thread's context).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def load_image(path: str | Path, min_size: int | None = None) -> Image.Image:
    """Read ``path`` as an upright 8-bit RGB image.

    With ``min_size``, a JPEG may be decoded at a reduced scale whose shorter side is still at
    least ``min_size`` pixels; other formats are decoded in full. Raises ``DataError`` naming the
    file when it is missing, larger than ``MAX_PIXELS`` or cannot be decoded.
    """
    with bomb_warnings_ignored():
        return _decode(Path(path), min_size, "cannot decode image")


def _decode(path: Path, min_size: int | None, failure: str) -> Image.Image:
    """``load_image`` without the warnings context (for threads inside one); ``failure`` words
    the error."""
    with _errors_named(path, failure), Image.open(path) as opened:
        check_pixel_count(path, opened.size)
        if min_size is not None and opened.format == "JPEG":
            opened.draft("RGB", _draft_request(opened.size, min_size))
        image = to_rgb(ImageOps.exif_transpose(opened))  # a new image, never `opened`
        image.load()
        return image


@contextmanager
def _errors_named(path: Path, failure: str) -> Iterator[None]:
    """Turn what Pillow raises for ``path`` into one ``DataError`` line; ``failure`` words it."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except DataError:
        raise
    except DECODE_ERRORS as exc:
        raise DataError(f"{path}: {failure} ({_reason(exc)})") from None


def check_pixel_count(path: Path, size: tuple[int, int]) -> None:
    """Refuse an image whose header declares more than ``MAX_PIXELS`` pixels."""
    width, height = size
    if width * height > MAX_PIXELS:
        raise DataError(
            f"{path}: {width}x{height} pixels is more than the {MAX_PIXELS:,} this project decodes"
            " (a decompression bomb? the limit is MAX_PIXELS in images.py)"
        )


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _draft_request(size: tuple[int, int], min_size: int) -> tuple[int, int]:
    """The size to ask ``Image.draft`` for so the decoded shorter side stays >= ``min_size``.

    ``draft`` picks the largest DCT reduction whose result is still at least the requested size,
    so asking for the image scaled to ``min_size`` on its shorter side is exactly enough (EXIF
    rotation does not change which side is shorter).
    """
    width, height = size
    scale = min_size / min(width, height)
    if scale >= 1:
        return size
    return (max(1, int(width * scale)), max(1, int(height * scale)))


def check_image_header(path: Path) -> tuple[int, int]:
    """Cheaply confirm that ``path`` exists, starts like an image and is not too large; return
    the ``(width, height)`` its header declares."""
    with (
        _errors_named(path, "not a readable image"),
        bomb_warnings_ignored(),
        Image.open(path) as image,
    ):
        check_pixel_count(path, image.size)
        return image.size


def verify_image(path: Path) -> str | None:
    """Decode ``path`` completely (at the smallest JPEG scale); the error line, or None if fine.

    The smallest DCT scale still entropy-decodes the whole file, so truncated and corrupt files
    fail here as they would in training, for a fraction of the work. Call it inside
    ``bomb_warnings_ignored``.
    """
    try:
        _decode(path, 1, "not a readable image")
    except DataError as exc:
        return str(exc)
    return None


def find_unreadable(folder: Path, names: Sequence[str], label: str = "") -> dict[str, str]:
    """Decode every listed image of ``folder``; map each one that fails to its error line.

    Decodes run in one thread per available core (Pillow releases the GIL while decoding). Files
    verified before, unchanged since (same size and modification time in nanoseconds) and decoded
    by the same Pillow, are skipped: large folders keep a stamp file per folder under the user's
    cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``), so a read-only data folder works too.
    """
    stats = {name: _stat_key(folder / name) for name in names}
    remember = len(names) >= STAMP_MIN_FILES
    verified = _read_stamp(folder) if remember else {}
    todo = [name for name in names if stats[name] is None or verified.get(name) != stats[name]]
    failures: dict[str, str] = {}
    # Here, not at the top: the offline inference path (a Kaggle notebook) imports this module.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with (
        Progress(*columns, disable=len(todo) < PROGRESS_MIN_FILES) as bar,
        bomb_warnings_ignored(),
        ThreadPoolExecutor(max_workers=available_cores()) as pool,
    ):
        job = bar.add_task(f"decoding {label or folder.name}", total=len(todo))
        for name, reason in zip(todo, pool.map(verify_image, (folder / n for n in todo))):
            bar.advance(job)
            key = stats[name]
            if reason is not None:
                failures[name] = reason
                verified.pop(name, None)
            elif key is not None:  # a file that could not be stat'ed is verified again next run
                verified[name] = key
    if remember and todo:
        _write_stamp(folder, {name: verified[name] for name in names if name in verified})
    return failures


def _stat_key(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def stamp_path(folder: Path) -> Path:
    """Where the verified-files stamp of ``folder`` lives (outside it: it may be read-only)."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:20]
    return cache_home / __name__.split(".")[0] / "verified" / f"{key}.json"


def _decoder_key() -> str:
    return f"Pillow {PIL.__version__}, MAX_PIXELS {MAX_PIXELS}"


def _read_stamp(folder: Path) -> dict[str, list[int]]:
    """The files of ``folder`` verified before, or nothing if the stamp is absent or unusable."""
    try:
        stamp = json.loads(stamp_path(folder).read_text())
        if stamp["folder"] != str(folder.resolve()) or stamp["decoder"] != _decoder_key():
            return {}
        return {str(name): list(key) for name, key in stamp["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_stamp(folder: Path, files: dict[str, list[int]]) -> None:
    """Replace the stamp atomically; a cache folder that cannot be written just means no stamp."""
    stamp = {"folder": str(folder.resolve()), "decoder": _decoder_key(), "files": files}
    with suppress(OSError, DiskFullError):
        write_json(stamp_path(folder), stamp, indent=None)

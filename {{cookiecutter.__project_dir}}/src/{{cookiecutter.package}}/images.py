"""Image files: any file Pillow reads becomes an upright 8-bit RGB image, decoded no larger than
needed (JPEG DCT scaling), every mode mapped onto 0..255 (16-bit samples divided by 257, float
ones read as 0.0..1.0, transparency laid on white); hostile files fail with one line naming them.
``file_digest`` is the one digest of a file's bytes, ``perceptual_hash`` the one hash of what it
shows."""

from __future__ import annotations

import hashlib
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .utils.errors import DataError

HASH_DECODE_SIDE = 64  # a JPEG is decoded at the smallest DCT scale still this large to be hashed
MAX_PIXELS = 64_000_000  # six PP2021 photos, refused before decoding; raise it for larger images
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


def file_digest(path: Path) -> str:
    """BLAKE2b (160 bits) of a file's bytes: finds identical images, confirms cached ones."""
    digest = hashlib.blake2b(digest_size=20)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def perceptual_hash(path: Path) -> str:
    """ImageHash's ``dhash`` (64 bits, hexadecimal) of the picture in ``path``: resized,
    re-encoded and slightly cropped copies differ from it in few bits (``prep.duplicates``).
    ``DataError`` naming the file if it cannot be decoded; call it inside
    ``bomb_warnings_ignored``."""
    import imagehash  # here: the offline inference path (a Kaggle notebook) imports this module

    return str(imagehash.dhash(decode(path, HASH_DECODE_SIDE, "not a readable image")))


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
    """Silence Pillow's decompression-bomb warning (``MAX_PIXELS`` refuses those files anyway);
    process-wide state: enter it in one thread only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def load_image(path: str | Path, min_size: int | None = None) -> Image.Image:
    """Read ``path`` as an upright 8-bit RGB image; ``DataError`` naming the file if it is
    missing, larger than ``MAX_PIXELS`` or undecodable. With ``min_size``, a JPEG may be decoded
    at a reduced scale whose shorter side is still at least ``min_size`` pixels."""
    with bomb_warnings_ignored():
        return decode(Path(path), min_size, "cannot decode image")


def decode(path: Path, min_size: int | None, failure: str) -> Image.Image:
    """``load_image`` without the warnings context (for threads inside one); ``failure`` words
    the error."""
    with errors_named(path, failure), Image.open(path) as opened:
        check_pixel_count(path, opened.size)
        if min_size is not None and opened.format == "JPEG":
            width, height = opened.size  # draft: the largest DCT reduction still >= min_size
            scale = min(1.0, min_size / min(width, height))
            opened.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
        image = to_rgb(ImageOps.exif_transpose(opened))  # a new image, never `opened`
        image.load()
        return image


@contextmanager
def errors_named(path: Path, failure: str) -> Iterator[None]:
    """Turn what Pillow raises for ``path`` into one ``DataError`` line; ``failure`` words it."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except DataError:
        raise
    except DECODE_ERRORS as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: {failure} ({reason})") from None


def check_pixel_count(path: Path, size: tuple[int, int]) -> None:
    """Refuse an image whose header declares more than ``MAX_PIXELS`` pixels."""
    width, height = size
    if width * height > MAX_PIXELS:
        raise DataError(
            f"{path}: {width}x{height} pixels is more than the {MAX_PIXELS:,} this project decodes"
            " (a decompression bomb? the limit is MAX_PIXELS in images.py)"
        )

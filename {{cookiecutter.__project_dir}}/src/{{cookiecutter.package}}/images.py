"""Image decoding: any file PIL reads becomes an RGB image, decoded no larger than needed.

JPEGs are decoded with DCT scaling (``Image.draft``) to the smallest power-of-two reduction that
still covers the requested size, which is what makes 4000x2672 competition photos cheap to read.
EXIF orientation is applied; grayscale, palette, CMYK and RGBA inputs all come out RGB.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from .errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent pixels are laid on white, not on black."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def load_image(path: str | Path, min_size: int | None = None) -> Image.Image:
    """Read ``path`` as an upright RGB image.

    With ``min_size``, a JPEG may be decoded at a reduced scale whose shorter side is still at
    least ``min_size`` pixels; other formats are decoded in full. Raises ``DataError`` naming the
    file when it is missing or cannot be decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if min_size is not None and image.format == "JPEG":
                image.draft("RGB", _draft_request(image.size, min_size))
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


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


def check_image_header(path: Path) -> None:
    """Cheaply confirm that ``path`` exists and starts like an image; raise ``DataError`` if not."""
    try:
        with Image.open(path) as image:
            image.size  # opening parses the header; reading the size proves it was understood
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None

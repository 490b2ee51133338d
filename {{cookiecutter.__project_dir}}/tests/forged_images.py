"""Image files forged for tests: small real files whose headers claim what they are not."""

import struct
from pathlib import Path

from PIL import Image


def jpeg_claiming(path: Path, width: int, height: int) -> Path:
    """A real small JPEG whose frame header is patched to claim ``width`` x ``height``."""
    Image.new("RGB", (16, 16), (90, 120, 30)).save(path)
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path

"""A figure is drawn, not blank: its data marks (bars, lines, points, cells, photos) are coloured.

Axes, ticks and titles are black or grey, so a figure whose plotting call drew nothing has no
coloured pixel at all; the sparsest real figures (the curves of a one-epoch run: one point per
series; the image-size scatter of the sample set: one point) colour 0.08 % to 0.15 % of theirs.
"""

import io

import numpy as np
from PIL import Image

MIN_COLOURED = 0.0003  # the share of pixels whose channels differ by more than COLOUR_SPREAD
COLOUR_SPREAD = 60


def coloured_fraction(image: Image.Image) -> float:
    """The share of pixels that are clearly coloured (not white, grey or black)."""
    pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    return float((pixels.max(axis=-1) - pixels.min(axis=-1) > COLOUR_SPREAD).mean())


def assert_drawn(png: bytes | Image.Image, name: str) -> None:
    """Fail if the figure ``name`` (PNG bytes or an opened image) has no coloured marks."""
    image = Image.open(io.BytesIO(png)) if isinstance(png, bytes) else png
    assert coloured_fraction(image) > MIN_COLOURED, f"{name}: the figure is blank"

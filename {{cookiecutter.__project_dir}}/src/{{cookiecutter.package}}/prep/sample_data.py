"""``sample-data``: a deterministic, learnable miniature of Plant Pathology 2021, drawn afresh:
each leaf shows the lesions of its labels, in the competition's twelve label combinations."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..cli.argtypes import command_parser, non_negative_int, positive_int
from ..utils.errors import DataError, full_disk_named
from ..images import MAX_PIXELS
from ..kaggle.target import staged_folder
from .cache import refuse_unless_new
from ..layout import SAMPLE_SUBMISSION, TEST_IMAGES, TRAIN_CSV, TRAIN_IMAGES

# The twelve label combinations of Plant Pathology 2021, with rough relative frequencies.
LABEL_SETS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("scab",), 26.0),
    (("healthy",), 25.0),
    (("frog_eye_leaf_spot",), 17.0),
    (("rust",), 10.0),
    (("complex",), 8.5),
    (("powdery_mildew",), 6.5),
    (("frog_eye_leaf_spot", "scab"), 3.7),
    (("complex", "frog_eye_leaf_spot", "scab"), 1.1),
    (("complex", "frog_eye_leaf_spot"), 0.9),
    (("frog_eye_leaf_spot", "rust"), 0.7),
    (("complex", "rust"), 0.5),
    (("complex", "powdery_mildew"), 0.5),
)
CLASSES = sorted({label for labels, _ in LABEL_SETS for label in labels})
MAX_SIDE = 65_500  # the longest side a JPEG file can hold
# Draw the rare combinations more often than in the real data, so a small sample holds each.
SAMPLING_FLOOR = 3.0


def _rotated(leaf: dict, x: float, y: float) -> tuple[float, float]:
    """The image coordinates of ``(x, y)`` given along the leaf's axes."""
    a = leaf["angle"]
    return (
        leaf["cx"] + x * math.cos(a) - y * math.sin(a),
        leaf["cy"] + x * math.sin(a) + y * math.cos(a),
    )


def _leaf_outline(leaf: dict) -> list[tuple[float, float]]:
    """Outline of a pointed leaf."""
    points = []
    for step in range(48):
        t = 2 * math.pi * step / 48
        y = leaf["width"] / 2 * math.sin(t) * (1 - 0.35 * math.cos(t)) * abs(math.sin(t)) ** 0.15
        points.append(_rotated(leaf, leaf["length"] / 2 * math.cos(t), y))
    return points


def _spot_centres(rng: np.random.Generator, leaf: dict, count: int) -> list[tuple[float, float]]:
    """Random points inside the leaf's ellipse."""
    centres = []
    for _ in range(count):
        r = 0.8 * math.sqrt(rng.uniform(0, 1))
        t = rng.uniform(0, 2 * math.pi)
        x, y = r * leaf["length"] / 2 * math.cos(t), r * leaf["width"] / 2 * math.sin(t)
        centres.append(_rotated(leaf, x, y))
    return centres


def _circle(draw: ImageDraw.ImageDraw, centre: tuple[float, float], r: float, **style: Any) -> None:
    x, y = centre
    draw.ellipse((x - r, y - r, x + r, y + r), **style)


def _blob(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    centre: tuple[float, float],
    radius: float,
    fill: tuple[int, ...],
) -> None:
    """An irregular blob made of a few overlapping ellipses."""
    for _ in range(4):
        dx, dy = rng.normal(0, radius / 3, size=2)
        rx, ry = radius * rng.uniform(0.5, 1.0), radius * rng.uniform(0.5, 1.0)
        x, y = centre[0] + dx, centre[1] + dy
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=fill)


def draw_leaf(
    labels: tuple[str, ...], rng: np.random.Generator, size: tuple[int, int]
) -> Image.Image:
    """One synthetic leaf photo showing the symptoms of ``labels``."""
    width, height = size
    soil = np.array([110, 90, 70]) * rng.uniform(0.75, 1.25) + rng.integers(-8, 8, size=3)
    noise = rng.normal(0, 10, size=(height, width, 1))
    background = np.clip(soil[None, None, :] + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(background).filter(ImageFilter.GaussianBlur(1.5)).convert("RGBA")

    leaf = {
        "cx": width * rng.uniform(0.42, 0.58),
        "cy": height * rng.uniform(0.42, 0.58),
        "length": width * rng.uniform(0.75, 0.95),
        "width": height * rng.uniform(0.55, 0.75),
        "angle": rng.uniform(-0.5, 0.5),
    }
    green = (int(rng.integers(50, 90)), int(rng.integers(120, 165)), int(rng.integers(35, 70)), 255)
    outline = _leaf_outline(leaf)
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.polygon(outline, fill=green)
    if "complex" in labels:  # browned, necrotic margin on one side of the leaf
        for centre in _spot_centres(rng, leaf, 5):
            _blob(draw, rng, centre, leaf["width"] * 0.22, (150, 110, 50, 255))
        draw.polygon(outline, outline=(120, 80, 40, 255), width=3)
    midrib = [_rotated(leaf, -leaf["length"] / 2, 0), _rotated(leaf, leaf["length"] / 2, 0)]
    draw.line(midrib, fill=(green[0] + 40, green[1] + 40, green[2] + 30, 255), width=2)

    radius = leaf["width"] * 0.07
    if "scab" in labels:
        for centre in _spot_centres(rng, leaf, int(rng.integers(4, 8))):
            _blob(draw, rng, centre, radius * rng.uniform(0.8, 1.4), (45, 45, 25, 255))
    if "rust" in labels:
        for centre in _spot_centres(rng, leaf, int(rng.integers(4, 9))):
            r = radius * rng.uniform(0.6, 1.0)
            _circle(draw, centre, 1.6 * r, fill=(220, 200, 60, 255))
            _circle(draw, centre, r, fill=(230, 110, 20, 255))
    if "frog_eye_leaf_spot" in labels:
        for centre in _spot_centres(rng, leaf, int(rng.integers(3, 7))):
            r = radius * rng.uniform(0.9, 1.3)
            _circle(draw, centre, r, fill=(200, 185, 150, 255), outline=(90, 30, 60, 255), width=2)
    if "powdery_mildew" in labels:
        for centre in _spot_centres(rng, leaf, int(rng.integers(2, 4))):
            _blob(draw, rng, centre, leaf["width"] * 0.2, (235, 235, 230, 150))
    image = Image.alpha_composite(image, overlay).convert("RGB")
    return image.filter(ImageFilter.GaussianBlur(0.6))


def generate(
    out_dir: str | Path,
    n_train: int = 160,
    n_test: int = 12,
    size: tuple[int, int] = (128, 96),
    seed: int = 2021,
) -> Path:
    """Write ``train.csv``, ``train_images/``, ``test_images/`` and ``sample_submission.csv``
    into ``out_dir`` and return it; the same arguments always give the same files."""
    out = Path(out_dir)
    weights = np.array([max(weight, SAMPLING_FLOOR) for _, weight in LABEL_SETS])
    probabilities = weights / weights.sum()
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[str, str]]] = {TRAIN_IMAGES: [], TEST_IMAGES: []}
    parts = ((TRAIN_IMAGES, n_train, "train_"), (TEST_IMAGES, n_test, "test_"))
    for folder, count, prefix in parts:
        (out / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            labels = LABEL_SETS[rng.choice(len(LABEL_SETS), p=probabilities)][0]
            name = f"{prefix}{index:04d}.jpg"
            draw_leaf(labels, rng, size).save(out / folder / name, quality=85)
            rows[folder].append((name, " ".join(labels)))
    submission = [(name, "healthy") for name, _ in rows[TEST_IMAGES]]
    for csv_name, table in ((TRAIN_CSV, rows[TRAIN_IMAGES]), (SAMPLE_SUBMISSION, submission)):
        with (out / csv_name).open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([("image", "labels"), *table])
    return out


def run_command(argv: Sequence[str]) -> int:
    """``sample-data DIR [--n-train N] [--n-test N] ...``: write the set into a new folder that
    appears complete or not at all; returns the exit code."""
    parser = command_parser(
        "sample-data", "Write a deterministic synthetic sample of the competition data."
    )
    parser.add_argument("out_dir", type=Path, help="folder to create (must not exist or be empty)")
    for flag, kind, default, what in (
        ("--n-train", positive_int, 160, "training images"),
        ("--n-test", non_negative_int, 12, "test images"),
        ("--width", positive_int, 128, "image width"),
        ("--height", positive_int, 96, "image height"),
        ("--seed", non_negative_int, 2021, "random seed"),
    ):
        parser.add_argument(flag, type=kind, default=default, help=f"{what} (default {default})")
    args = parser.parse_args(argv)
    out, width, height = args.out_dir, args.width, args.height
    refuse_unless_new(out)
    for option, side in (("--width", width), ("--height", height)):
        if side > MAX_SIDE:
            raise DataError(f"{option} {side}: a JPEG side holds at most {MAX_SIDE:,} pixels")
    if width * height > MAX_PIXELS:
        raise DataError(
            f"--width {width} --height {height}: {width * height:,} pixels an image is more than"
            f" the {MAX_PIXELS:,} this project reads (MAX_PIXELS in images.py)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(out) as staging, full_disk_named(out):
        generate(staging, args.n_train, args.n_test, (width, height), args.seed)
    print(f"wrote {args.n_train} training and {args.n_test} test images to {out}")
    return 0

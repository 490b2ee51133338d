"""A deterministic, learnable miniature of Plant Pathology 2021, drawn from scratch.

Each image is a leaf on a soil-coloured background; the lesions drawn on it depend on its labels
(olive-black blotches for scab, orange pustules for rust, ringed spots for frog-eye leaf spot,
white powder for powdery mildew, a browned margin for complex). Label sets follow the real
competition's twelve combinations and their rough frequencies, and ``healthy`` never co-occurs
with a disease. The output uses the Kaggle layout, so every command runs on it unchanged.

``sample-data DIR`` (``run_command``) writes the set into a new folder that appears complete or
not at all. Image sizes are bounded by what the project can use: at most ``images.MAX_PIXELS``
pixels (the reader refuses larger images; a competition photo, 4000x2672, is a sixth of it) and
``MAX_SIDE`` pixels a side (the most a JPEG holds). Drawing takes about 60 bytes of memory per
pixel, so 3.6 GB at the limit rather than the 75 GiB that 100000x100000 would ask for.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..cli.argtypes import command_parser, non_negative_int, positive_int
from ..utils.atomic import write_csv
from ..utils.errors import DataError, full_disk_named
from ..images import MAX_PIXELS
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


def _label_sets_probabilities() -> np.ndarray:
    weights = np.array([max(weight, SAMPLING_FLOOR) for _, weight in LABEL_SETS])
    return weights / weights.sum()


def _leaf_polygon(cx: float, cy: float, length: float, width: float, angle: float) -> list:
    """Outline of a pointed leaf, as (x, y) points."""
    points = []
    for step in range(48):
        t = 2 * math.pi * step / 48
        x = length / 2 * math.cos(t)
        y = width / 2 * math.sin(t) * (1 - 0.35 * math.cos(t)) * abs(math.sin(t)) ** 0.15
        points.append(
            (
                cx + x * math.cos(angle) - y * math.sin(angle),
                cy + x * math.sin(angle) + y * math.cos(angle),
            )
        )
    return points


def _spot_centres(rng: np.random.Generator, leaf: dict, count: int) -> list[tuple[float, float]]:
    """Random points inside the leaf's ellipse."""
    centres = []
    for _ in range(count):
        r = 0.8 * math.sqrt(rng.uniform(0, 1))
        t = rng.uniform(0, 2 * math.pi)
        x, y = r * leaf["length"] / 2 * math.cos(t), r * leaf["width"] / 2 * math.sin(t)
        a = leaf["angle"]
        centres.append(
            (
                leaf["cx"] + x * math.cos(a) - y * math.sin(a),
                leaf["cy"] + x * math.sin(a) + y * math.cos(a),
            )
        )
    return centres


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
    outline = _leaf_polygon(leaf["cx"], leaf["cy"], leaf["length"], leaf["width"], leaf["angle"])
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.polygon(outline, fill=green)
    if "complex" in labels:  # browned, necrotic margin on one side of the leaf
        for centre in _spot_centres(rng, leaf, 5):
            _blob(draw, rng, centre, leaf["width"] * 0.22, (150, 110, 50, 255))
        draw.polygon(outline, outline=(120, 80, 40, 255), width=3)
    a = leaf["angle"]
    half = leaf["length"] / 2
    start = (leaf["cx"] - half * math.cos(a), leaf["cy"] - half * math.sin(a))
    end = (leaf["cx"] + half * math.cos(a), leaf["cy"] + half * math.sin(a))
    draw.line([start, end], fill=(green[0] + 40, green[1] + 40, green[2] + 30, 255), width=2)

    radius = leaf["width"] * 0.07
    if "scab" in labels:
        for centre in _spot_centres(rng, leaf, int(rng.integers(4, 8))):
            _blob(draw, rng, centre, radius * rng.uniform(0.8, 1.4), (45, 45, 25, 255))
    if "rust" in labels:
        for centre in _spot_centres(rng, leaf, int(rng.integers(4, 9))):
            r = radius * rng.uniform(0.6, 1.0)
            x, y = centre
            draw.ellipse(
                (x - 1.6 * r, y - 1.6 * r, x + 1.6 * r, y + 1.6 * r), fill=(220, 200, 60, 255)
            )
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(230, 110, 20, 255))
    if "frog_eye_leaf_spot" in labels:
        for centre in _spot_centres(rng, leaf, int(rng.integers(3, 7))):
            r = radius * rng.uniform(0.9, 1.3)
            x, y = centre
            draw.ellipse(
                (x - r, y - r, x + r, y + r),
                fill=(200, 185, 150, 255),
                outline=(90, 30, 60, 255),
                width=2,
            )
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
    quality: int = 85,
) -> Path:
    """Write a Kaggle-layout sample set into ``out_dir`` and return it.

    Creates ``train.csv`` (``image,labels``), ``train_images/``, ``test_images/`` and
    ``sample_submission.csv``. The same arguments always give the same images and labels.
    """
    out = Path(out_dir)
    (out / TRAIN_IMAGES).mkdir(parents=True, exist_ok=True)
    (out / TEST_IMAGES).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    probabilities = _label_sets_probabilities()

    def draw_set(count: int, prefix: str, folder: str) -> list[tuple[str, str]]:
        rows = []
        for index in range(count):
            labels = LABEL_SETS[rng.choice(len(LABEL_SETS), p=probabilities)][0]
            name = f"{prefix}{index:04d}.jpg"
            draw_leaf(labels, rng, size).save(out / folder / name, quality=quality)
            rows.append((name, " ".join(labels)))
        return rows

    train_rows = draw_set(n_train, "train_", TRAIN_IMAGES)
    test_rows = draw_set(n_test, "test_", TEST_IMAGES)
    write_csv(out / TRAIN_CSV, ["image", "labels"], train_rows)
    write_csv(out / SAMPLE_SUBMISSION, ["image", "labels"], [(n, "healthy") for n, _ in test_rows])
    return out


def generate_into_new_folder(
    out_dir: Path, n_train: int, n_test: int, size: tuple[int, int], seed: int
) -> Path:
    """``generate`` into ``out_dir``, which must not exist or be empty, all or nothing.

    The set is written into a hidden staging folder beside ``out_dir`` and renamed into place, so
    an interrupted or failed run leaves no half-written folder behind.
    """
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: already exists and is not an empty folder")
    if min(n_train, *size) < 1 or n_test < 0:
        raise DataError("--n-train, --width and --height must be positive, --n-test >= 0")
    check_image_size(size)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with full_disk_named(out_dir):
            generate(staging, n_train, n_test, size, seed)
            if out_dir.exists():
                out_dir.rmdir()
            os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def check_image_size(size: tuple[int, int]) -> None:
    """``DataError`` naming the option if ``size`` is more than a JPEG or the reader takes."""
    for option, side in zip(("--width", "--height"), size):
        if side > MAX_SIDE:
            raise DataError(f"{option} {side}: a JPEG side holds at most {MAX_SIDE:,} pixels")
    width, height = size
    if width * height > MAX_PIXELS:
        raise DataError(
            f"--width {width} --height {height}: {width * height:,} pixels an image is more than"
            f" the {MAX_PIXELS:,} this project reads (MAX_PIXELS in images.py)"
        )


def run_command(argv: Sequence[str]) -> int:
    """``sample-data DIR [--n-train N] [--n-test N] ...``; returns the exit code."""
    parser = command_parser(
        "sample-data", "Write a deterministic synthetic sample of the competition data."
    )
    parser.add_argument("out_dir", type=Path, help="folder to create (must not exist or be empty)")
    parser.add_argument(
        "--n-train", type=positive_int, default=160, help="training images (default 160)"
    )
    parser.add_argument(
        "--n-test", type=non_negative_int, default=12, help="test images (default 12)"
    )
    parser.add_argument("--width", type=positive_int, default=128, help="image width (default 128)")
    parser.add_argument("--height", type=positive_int, default=96, help="image height (default 96)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=2021, help="random seed (default 2021)"
    )
    args = parser.parse_args(argv)
    size = (args.width, args.height)
    generate_into_new_folder(args.out_dir, args.n_train, args.n_test, size, args.seed)
    print(f"wrote {args.n_train} training and {args.n_test} test images to {args.out_dir}")
    return 0
